"""Deterministic synthetic corpus in the Fake Video Corpus (FVC) layout.

The real FVC ships as password-protected archives ``FVC1.zip`` .. ``FVCn.zip`` holding the
videos plus a ``Metadata.zip`` with ``FVC.csv`` (one original per cascade) and ``FVC_dup.csv``
(the near-duplicates of each cascade).  This module writes a small stand-in with the same
layout so that the whole pipeline can run end to end without the real data:

* videos are procedurally generated moving scenes (colour gradient, low-frequency colour noise
  and 1/f-like multi-octave texture, camera pan and shake, moving anti-aliased shapes, optics
  blur, flicker and sensor noise), encoded with libx264 (yuv420p) at varied sizes, frame
  rates, CRFs (18-32) and GOP sizes;
* a cascade groups 1-4 videos (1.4 on average, so a corpus has many small cascades): the
  original and re-encodes of the same content at other sizes and/or CRFs, i.e. genuine
  near-duplicates;
* every cascade, real or fake, is a composite: an elliptical region of a second recording (a
  donor scene of its own) blended into the host scene with feathered edges, with region,
  feather and photometric mismatch drawn the same way for both classes, so the content does
  not tell the label.  Only the region's processing differs.  Fake (and parody) cascades
  resample it (down- then up-scaled), JPEG-compress it at low quality on the frame's 8x8 grid
  and sharpen it (unsharp mask, which also accentuates the JPEG block edges) before blending;
  then the frame is x264-encoded, so the region is compressed twice and the rest once.  Real
  (and uncertain) cascades blend the region in untouched: compressed once, like the rest.

Everything is derived from ``numpy.random.default_rng`` seeded by the spec, archives use fixed
zip timestamps, x264 runs single-threaded without macroblock-tree rate control (which made the
bundled x264's output vary run to run), and the muxer is bit-exact, so the same spec gives
byte-identical archives (with a password too: the AES salts are derived from the seed).

A corpus can be shifted from that default along named axes (`SHIFT_AXES`: the codec, the
manipulation family and strength of the fakes, the originals' resolution, the camera motion),
for a test set no model has seen the like of; a shifted corpus's archives say so in their zip
comment (`archive_shift`). Its metadata CSVs can carry a `split` column that declares every
video a training or a test video.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TextIO, TypeVar

import av
import cv2
import numpy as np
import pyzipper
from Cryptodome.Cipher import AES
from Cryptodome.Hash import HMAC
from Cryptodome.Hash.SHA1 import SHA1Hash
from Cryptodome.Protocol.KDF import PBKDF2
from Cryptodome.Util import Counter

from fvc_dagster.lib.frames import resize_frames

__all__ = [
    "CSV_HEADER",
    "CorpusSpec",
    "GeneratedVideo",
    "METADATA_ARCHIVE",
    "SHIFT_AXES",
    "SPLITS",
    "archive_names",
    "metadata_archive",
    "archive_shift",
    "generate_corpus",
    "parse_resolution",
    "shift_of",
    "shifted",
]

CSV_HEADER = ("cascade_id", "video_url", "label")
METADATA_ARCHIVE = "Metadata.zip"
ORIGINALS_CSV = "FVC.csv"
DUPLICATES_CSV = "FVC_dup.csv"
ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)

# Native resolutions (width, height) and their relative frequency.
_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (176, 144),
    (320, 240),
    (426, 240),
    (480, 360),
    (640, 360),
    (240, 426),
)
_RESOLUTION_P = (0.12, 0.2, 0.2, 0.16, 0.2, 0.12)
_FPS = (15, 24, 25, 30)
_GOPS = (12, 30, 250)
_DUP_SCALES = (0.5, 2 / 3, 0.75, 1.0, 1.25)
_MIN_SIDE = 96  # no video side smaller (originals and near-duplicates)
_YT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_YT_LAST = "AEIMQUYcgkosw048"  # real YouTube ids only end in these (64-bit id, 66 bits coded)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "zen", "dar", "mon", "pix", "news")
_EXTRA_LABELS = ("uncertain", "parody")
_OCTAVE_CELLS = (6, 12, 24, 48, 96, 192, 384)  # texture grid cells across the canvas width
_MEAN_CASCADE_SIZE = 1.4  # videos per cascade: 60 videos make 41 real/fake cascades
_MAX_CASCADE_SIZE = 4
_MANIPULATED = ("fake", "parody")  # labels whose spliced region is recompressed and sharpened
_HOST_SCENES, _DONOR_SCENES = 7919, 7927  # seed streams of the two scenes of a cascade

# Splice parameters, drawn uniformly per cascade (all of them for every cascade: the
# recompression ones are applied to fakes only).
_SPLICE_SIZE = (0.5, 0.7)  # region width/height as a fraction of the frame
_SPLICE_QUALITY = (30, 50)  # JPEG quality of the spliced region (inclusive)
_SPLICE_RESAMPLE = (0.7, 0.9)  # down-then-up-scale factor applied before the JPEG step
_SPLICE_SHARPEN = (1.6, 2.6)  # unsharp-mask amount applied to the decoded JPEG patch
_SPLICE_SHARPEN_SIGMA = (1.4, 2.0)

# Shift axes. Codecs and their encoders (`_encoder_options`).
_CODECS = {"h264": "libx264", "mpeg4": "mpeg4", "vp9": "libvpx-vp9"}
# Manipulation families: the steps of `_recompress` a fake's region goes through.
_MANIPULATIONS = {
    "recompress": ("resample", "jpeg", "sharpen"),
    "jpeg": ("jpeg",),
    "resample": ("resample",),
    "sharpen": ("sharpen",),
}
# Manipulation strengths: the ranges the splice's quality, resample and sharpen draws are mapped
# onto (each draw keeps its place in its range, so the rest of the plan stays the same).
_STRENGTHS = {
    "default": {"quality": _SPLICE_QUALITY, "resample": _SPLICE_RESAMPLE,
                "sharpen": _SPLICE_SHARPEN},
    "weak": {"quality": (65, 85), "resample": (0.91, 0.97), "sharpen": (0.6, 1.2)},
    "strong": {"quality": (12, 25), "resample": (0.45, 0.6), "sharpen": (3.0, 4.0)},
}  # fmt: skip
_CONTENTS = ("moving", "static")  # camera pan and shake, moving shapes; or a still scene
# Each axis: its values, the default first (resolution: any WIDTHxHEIGHT, default a mix).
SHIFT_AXES: dict[str, tuple[str, ...]] = {
    "codec": tuple(_CODECS),
    "manipulation": tuple(_MANIPULATIONS),
    "strength": tuple(_STRENGTHS),
    "resolution": ("mixed", "WIDTHxHEIGHT"),
    "content": _CONTENTS,
}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class CorpusSpec:
    n_videos: int = 60  # total videos including near-duplicates
    n_archives: int = 3  # FVC1.zip .. FVC{n}.zip
    seed: int = 0
    password: str | None = None  # when set, every archive is AES-encrypted with pyzipper
    min_frames: int = 24
    max_frames: int = 48
    # every original at this (width, height) instead of the mix of small native sizes
    resolution: tuple[int, int] | None = None
    codec: str = "h264"
    manipulation: str = "recompress"  # the steps of a fake's region (`_MANIPULATIONS`)
    strength: str = "default"
    content: str = "moving"
    split: str | None = None  # when set, the metadata CSVs' `split` column, for every video
    # before every archive name and cascade id, so a second corpus can share an inbox with the
    # first: `Test` gives TestFVC1.zip, TestMetadata.zip and cascades TestC0001 ...
    prefix: str = ""


@dataclass(frozen=True)
class GeneratedVideo:
    video_id: str
    archive: str
    member: str
    label: str
    cascade_id: str
    platform: str
    width: int
    height: int
    fps: int
    frames: int


def archive_names(spec: CorpusSpec) -> list[str]:
    """Names of the video archives a spec produces (``FVC1.zip`` ..)."""
    return [f"{spec.prefix}FVC{i}.zip" for i in range(1, spec.n_archives + 1)]


def metadata_archive(spec: CorpusSpec) -> str:
    """Name of the archive of a spec's metadata CSVs (``Metadata.zip``)."""
    return f"{spec.prefix}{METADATA_ARCHIVE}"


# --------------------------------------------------------------------------------------------
# Plan: cascades, labels, ids, archives, encodings
# --------------------------------------------------------------------------------------------


@dataclass
class _Member:
    video_id: str
    url: str
    platform: str
    archive: str
    member: str
    width: int
    height: int
    crf: int
    gop: int


@dataclass
class _Cascade:
    index: int
    cascade_id: str
    label: str
    manipulated: bool  # the spliced region is resampled, recompressed and sharpened
    fps: int
    frames: int
    width: int  # native size (the original's)
    height: int
    splice: dict = field(default_factory=dict)
    members: list[_Member] = field(default_factory=list)


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def _validate(spec: CorpusSpec) -> None:
    if spec.n_videos < 1:
        raise ValueError("n_videos must be >= 1")
    if spec.n_archives < 1:
        raise ValueError("n_archives must be >= 1")
    if spec.min_frames < 1 or spec.max_frames < spec.min_frames:
        raise ValueError("need 1 <= min_frames <= max_frames")
    if spec.password is not None and not spec.password:
        raise ValueError("password must be non-empty when given")
    if spec.resolution is not None and (
        min(spec.resolution) < _MIN_SIDE or any(side % 2 for side in spec.resolution)
    ):
        raise ValueError(
            f"resolution {spec.resolution}: need even sides of at least {_MIN_SIDE} pixels"
        )
    for axis in ("codec", "manipulation", "strength", "content"):
        if getattr(spec, axis) not in SHIFT_AXES[axis]:
            raise ValueError(f"{axis} {getattr(spec, axis)!r}: {_choices(axis)}")
    if not spec.prefix.isalnum() and spec.prefix:
        raise ValueError(f"prefix {spec.prefix!r}: letters and digits only")
    if spec.split is not None and spec.split not in SPLITS:
        raise ValueError(f"split {spec.split!r}: choose from {', '.join(SPLITS)}")


def _choices(axis: str) -> str:
    values = SHIFT_AXES[axis]
    return f"choose from {values[0]} (default), {', '.join(values[1:])}"


def parse_resolution(value: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT`, e.g. `1280x720`, as `(width, height)`."""
    try:
        width, height = (int(side) for side in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"{value!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return width, height


def shifted(spec: CorpusSpec, assignments: Iterable[str]) -> CorpusSpec:
    """`spec` shifted along `AXIS=VALUE` assignments (axes and values: `SHIFT_AXES`), each axis
    at most once; a bad assignment is a ValueError naming it and listing the axes."""
    axes = "; ".join(f"{axis}: {_choices(axis)}" for axis in SHIFT_AXES)
    changes: dict[str, object] = {}
    for assignment in assignments:
        axis, sep, value = assignment.partition("=")
        if not sep or axis not in SHIFT_AXES:
            raise ValueError(f"shift {assignment!r}: expected AXIS=VALUE; axes: {axes}")
        if axis in changes:
            raise ValueError(f"shift {assignment!r}: {axis} is shifted twice")
        if axis == "resolution":
            try:
                changes[axis] = None if value == "mixed" else parse_resolution(value)
            except ValueError as exc:
                raise ValueError(f"shift {assignment!r}: {exc}") from None
        elif value in SHIFT_AXES[axis]:
            changes[axis] = value
        else:
            raise ValueError(f"shift {assignment!r}: {axis}: {_choices(axis)}")
    out = replace(spec, **changes)
    _validate(out)
    return out


def shift_of(spec: CorpusSpec) -> dict[str, str]:
    """The axes along which `spec` is shifted from the default corpus, and their values."""
    default = CorpusSpec()
    shift = {
        axis: getattr(spec, axis)
        for axis in SHIFT_AXES
        if axis != "resolution" and getattr(spec, axis) != getattr(default, axis)
    }
    if spec.resolution is not None:
        shift["resolution"] = "{}x{}".format(*spec.resolution)
    return dict(sorted(shift.items()))


def archive_shift(path: Path) -> dict[str, str]:
    """The shift a generated archive records in its zip comment (empty: the default corpus)."""
    with zipfile.ZipFile(path) as zf:
        comment = zf.comment
    return json.loads(comment)["shift"] if comment else {}


def _cascade_sizes(rng: np.random.Generator, total: int) -> list[int]:
    """Sizes of the cascades of ``total`` videos: ``total / _MEAN_CASCADE_SIZE`` of them (two at
    least, for both classes), one video each, the rest added to random cascades not yet full."""
    sizes = np.ones(min(total, max(2, round(total / _MEAN_CASCADE_SIZE))), dtype=int)
    for _ in range(total - len(sizes)):
        sizes[rng.choice(np.flatnonzero(sizes < _MAX_CASCADE_SIZE))] += 1
    return sizes.tolist()


def _balanced_labels(rng: np.random.Generator, sizes: list[int]) -> list[str]:
    """Real or fake for each cascade: largest first, each to the class with fewer videos (then
    fewer cascades, then at random), so both classes get as many videos and cascades."""
    videos = {"real": 0, "fake": 0}
    cascades = {"real": 0, "fake": 0}
    labels = [""] * len(sizes)
    for i in sorted(rng.permutation(len(sizes)).tolist(), key=lambda j: -sizes[j]):
        load = {c: (videos[c], cascades[c]) for c in videos}
        if load["real"] == load["fake"]:
            label = "real" if rng.random() < 0.5 else "fake"
        else:
            label = min(load, key=load.__getitem__)
        videos[label] += sizes[i]
        cascades[label] += 1
        labels[i] = label
    return labels


class _IdFactory:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def _name(self) -> str:
        n = int(self.rng.integers(2, 4))
        parts = [_SYLLABLES[int(i)] for i in self.rng.integers(0, len(_SYLLABLES), n)]
        name = "".join(parts)
        if self.rng.random() < 0.5:
            name += str(int(self.rng.integers(1, 100)))
        return name

    def _digits(self, first: str, n: int) -> str:
        return first + "".join(str(int(d)) for d in self.rng.integers(0, 10, n - 1))

    def new(self) -> tuple[str, str, str]:
        """Return (video_id, url, platform)."""
        while True:
            r = self.rng.random()
            if r < 0.6:
                platform = "youtube"
                body = "".join(_YT_ALPHABET[int(i)] for i in self.rng.integers(0, 64, 10))
                vid = body + _YT_LAST[int(self.rng.integers(0, len(_YT_LAST)))]
                if self.rng.random() < 0.25:
                    url = f"https://youtu.be/{vid}"
                else:
                    url = f"https://www.youtube.com/watch?v={vid}"
            elif r < 0.8:
                platform = "facebook"
                vid = self._digits("1", int(self.rng.integers(15, 17)))
                url = f"https://www.facebook.com/{self._name()}/videos/{vid}/"
            else:
                platform = "twitter"
                vid = self._digits(str(int(self.rng.integers(7, 10))), 18)
                url = f"https://twitter.com/{self._name()}/status/{vid}"
            if vid not in self.seen:
                self.seen.add(vid)
                return vid, url, platform


def _plan(spec: CorpusSpec) -> list[_Cascade]:
    rng = np.random.default_rng(spec.seed)
    n_extra = len(_EXTRA_LABELS) if spec.n_videos >= 8 else 0
    sizes = _cascade_sizes(rng, spec.n_videos - n_extra)

    labelled = list(zip(sizes, _balanced_labels(rng, sizes), strict=True))
    for extra in _EXTRA_LABELS[:n_extra]:
        labelled.insert(int(rng.integers(0, len(labelled) + 1)), (1, extra))

    ids = _IdFactory(rng)
    archives = archive_names(spec)
    cascades: list[_Cascade] = []
    for ci, (size, label) in enumerate(labelled):
        # drawn even when the resolution is fixed, so the rest of the plan stays the same
        w, h = _RESOLUTIONS[int(rng.choice(len(_RESOLUTIONS), p=_RESOLUTION_P))]
        w, h = spec.resolution or (w, h)
        casc = _Cascade(
            index=ci,
            cascade_id=f"{spec.prefix}C{ci + 1:04d}",
            label=label,
            manipulated=label in _MANIPULATED,
            fps=int(rng.choice(_FPS)),
            frames=int(rng.integers(spec.min_frames, spec.max_frames + 1)),
            width=w,
            height=h,
        )
        home = int(rng.integers(0, len(archives)))
        orig_crf = int(rng.integers(18, 29))
        used: set[tuple[int, int, int]] = set()
        for k in range(size):
            mw, mh, crf = w, h, orig_crf
            while k > 0:  # a near-duplicate: another size and/or another CRF
                scale = float(rng.choice(_DUP_SCALES))
                mw, mh = _even(w * scale), _even(h * scale)
                if min(mw, mh) < _MIN_SIDE or max(mw, mh) > max(800, w, h):
                    mw, mh = w, h
                crf = int(rng.integers(18, 33))
                if (mw, mh, crf) not in used and ((mw, mh) != (w, h) or crf != orig_crf):
                    break
            used.add((mw, mh, crf))
            arch = home
            if k > 0 and len(archives) > 1 and rng.random() < 0.35:
                arch = int((home + rng.integers(1, len(archives))) % len(archives))
            vid, url, platform = ids.new()
            member = f"videos/{vid}.mp4" if rng.random() < 0.08 else f"{vid}.mp4"
            casc.members.append(
                _Member(
                    video_id=vid,
                    url=url,
                    platform=platform,
                    archive=archives[arch],
                    member=member,
                    width=mw,
                    height=mh,
                    crf=crf,
                    gop=int(rng.choice(_GOPS)),
                )
            )
        cascades.append(casc)

    # Every archive gets at least one video when there are enough videos.
    all_members = [m for c in cascades for m in c.members]
    for name in archives:
        if any(m.archive == name for m in all_members):
            continue
        load = {a: sum(m.archive == a for m in all_members) for a in archives}
        donor_arch = max(archives, key=lambda a: load[a])
        if load[donor_arch] < 2:
            break
        movable = [m for m in all_members if m.archive == donor_arch]
        movable[-1].archive = name

    # Splice parameters: the same draws for every cascade, whatever its label.
    for casc in cascades:
        casc.splice = _at_strength(spec.strength, {
            "rw": float(rng.uniform(*_SPLICE_SIZE)),  # region size, fraction of the frame
            "rh": float(rng.uniform(*_SPLICE_SIZE)),
            "cx": float(rng.uniform(0.35, 0.65)),  # region centre
            "cy": float(rng.uniform(0.35, 0.6)),
            "quality": int(rng.integers(_SPLICE_QUALITY[0], _SPLICE_QUALITY[1] + 1)),
            "resample": float(rng.uniform(*_SPLICE_RESAMPLE)),  # down/up-scale (smoothing)
            "sharpen": float(rng.uniform(*_SPLICE_SHARPEN)),
            "sharpen_sigma": float(rng.uniform(*_SPLICE_SHARPEN_SIGMA)),
            "feather": float(rng.uniform(0.06, 0.12)),  # feather width, fraction of region
            "gain": float(rng.uniform(0.94, 1.06)),  # slight photometric mismatch
        })  # fmt: skip
    return cascades


def _at_strength(strength: str, splice: dict) -> dict:
    """`splice` with its quality, resample and sharpen draws moved, each to the same place in
    its range of `strength`."""
    if strength == "default":
        return splice
    moved = dict(splice)
    for key, (low, high) in _STRENGTHS[strength].items():
        default_low, default_high = _STRENGTHS["default"][key]
        place = (splice[key] - default_low) / (default_high - default_low)
        moved[key] = low + place * (high - low)
    moved["quality"] = int(round(moved["quality"]))
    return moved


# --------------------------------------------------------------------------------------------
# Content: procedural scenes
# --------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    c0: np.ndarray
    c1: np.ndarray
    angle: float
    low: np.ndarray  # (gh, gw, 3) low-frequency colour noise grid
    amp_low: float
    octaves: list[tuple[np.ndarray, float]]  # luminance texture grids (coarse to fine), amps
    pan0: np.ndarray  # normalised pan start / end (fraction of the margin)
    pan1: np.ndarray
    shake: float
    shapes: list[dict]
    flicker: float
    blur: float
    noise: float


def _scene(seed: int, index: int, donor: bool = False) -> _Scene:
    """Cascade ``index``'s host scene, or its donor scene (a recording no cascade is hosted in)."""
    rng = np.random.default_rng([seed, _DONOR_SCENES if donor else _HOST_SCENES, index])
    shapes = []
    for _ in range(int(rng.integers(3, 8))):
        shapes.append(
            {
                "kind": int(rng.integers(0, 3)),  # 0 ellipse, 1 rectangle, 2 triangle
                "color": rng.uniform(20, 235, 3),
                "pos": rng.uniform(0.1, 0.9, 2),
                "vel": rng.normal(0, 0.25, 2),  # fraction of the frame per second
                "size": rng.uniform(0.05, 0.2, 2),
                "rot": float(rng.uniform(0, 360)),
                "spin": float(rng.normal(0, 40)),  # degrees per second
                "alpha": float(rng.uniform(0.75, 1.0)),
            }
        )
    # Roughly scale-invariant (1/f-like) texture: one noise grid per octave, amplitude
    # decaying slowly towards the fine scales, so scenes have natural-looking detail.
    amp, decay = float(rng.uniform(10, 22)), float(rng.uniform(0.7, 0.92))
    octaves = []
    for k, cells in enumerate(_OCTAVE_CELLS):
        grid = rng.normal(0, 1, (max(2, int(cells * 0.75)), cells)).astype(np.float32)
        octaves.append((grid, amp * decay**k))
    return _Scene(
        c0=rng.uniform(20, 235, 3),
        c1=rng.uniform(20, 235, 3),
        angle=float(rng.uniform(0, 2 * np.pi)),
        low=rng.normal(0, 1, (5, 7, 3)).astype(np.float32),
        amp_low=float(rng.uniform(15, 40)),
        octaves=octaves,
        pan0=rng.uniform(0, 1, 2),
        pan1=rng.uniform(0, 1, 2),
        shake=float(rng.uniform(0, 0.01)),
        shapes=shapes,
        flicker=float(rng.uniform(0, 0.04)),
        blur=float(rng.uniform(0.5, 1.0)),
        noise=float(rng.uniform(1.5, 4.0)),
    )


def _still(scene: _Scene) -> _Scene:
    """`scene` filmed from a fixed camera (no pan, no shake) with its shapes at rest."""
    shapes = [{**shape, "vel": np.zeros(2), "spin": 0.0} for shape in scene.shapes]
    return replace(scene, pan1=scene.pan0, shake=0.0, shapes=shapes)


def _render(
    scene: _Scene, width: int, height: int, frames: int, fps: int, noise_rng: np.random.Generator
) -> np.ndarray:
    """Render ``frames`` RGB uint8 frames of ``scene`` at ``width`` x ``height``."""
    margin = 0.25
    cw, ch = int(round(width * (1 + margin))), int(round(height * (1 + margin)))
    xs = np.linspace(0.0, 1.0, cw, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, ch, dtype=np.float32)[:, None]
    t = np.clip((np.cos(scene.angle) * xs + np.sin(scene.angle) * ys + 1.0) / 2.0, 0, 1)
    t = t[..., None]
    c0, c1 = scene.c0.astype(np.float32), scene.c1.astype(np.float32)
    canvas = c0 + (c1 - c0) * t
    canvas += scene.amp_low * cv2.resize(scene.low, (cw, ch), interpolation=cv2.INTER_CUBIC)
    tex = np.zeros((ch, cw), np.float32)
    for grid, amp in scene.octaves:
        if grid.shape[1] * 2.5 > cw:  # finer than the pixel grid can hold
            break
        tex += amp * cv2.resize(grid, (cw, ch), interpolation=cv2.INTER_CUBIC)
    canvas += tex[..., None]
    canvas = cv2.GaussianBlur(canvas, (0, 0), scene.blur)  # optics

    # Sensor noise: one field per video, sampled at a random offset each frame (cheap, and
    # temporally uncorrelated enough for a camera-noise stand-in).
    pad = 32
    noise = noise_rng.standard_normal((height + pad, width + pad, 3), dtype=np.float32)
    noise *= scene.noise
    offsets = noise_rng.integers(0, pad + 1, (frames, 2))
    out = np.empty((frames, height, width, 3), np.uint8)
    span = np.array([cw - width - 1, ch - height - 1], np.float64)
    reach = 2.0 + 3.0 * scene.blur
    for f in range(frames):
        u = f / max(1, frames - 1)
        sec = f / fps
        pan = (scene.pan0 * (1 - u) + scene.pan1 * u) * span
        pan += scene.shake * np.array([width, height]) * np.sin([sec * 7.3, sec * 5.1])
        m = np.float32([[1, 0, -pan[0]], [0, 1, -pan[1]]])
        frame = cv2.warpAffine(
            canvas, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        mean = float(frame.mean())
        for sh in scene.shapes:
            pos = (sh["pos"] + sh["vel"] * sec) % 1.2 - 0.1
            cx, cy = pos[0] * width, pos[1] * height
            sx, sy = sh["size"][0] * width, sh["size"][1] * height
            ang = sh["rot"] + sh["spin"] * sec
            if sh["kind"] == 0:
                t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
                px, py = sx * np.cos(t), sy * np.sin(t)
            elif sh["kind"] == 1:
                px, py = sx * np.array([-1, 1, 1, -1]), sy * np.array([-1, -1, 1, 1])
            else:
                t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
                px, py = sx * np.cos(t), sy * np.sin(t)
            ca, sa = np.cos(np.deg2rad(ang)), np.sin(np.deg2rad(ang))
            pts = np.stack([cx + ca * px - sa * py, cy + sa * px + ca * py], 1)
            # Only touch the shape's bounding box.
            x0 = max(0, int(pts[:, 0].min() - reach))
            x1 = min(width, int(pts[:, 0].max() + reach) + 1)
            y0 = max(0, int(pts[:, 1].min() - reach))
            y1 = min(height, int(pts[:, 1].max() + reach) + 1)
            if x1 <= x0 or y1 <= y0:
                continue
            cov = np.zeros((y1 - y0, x1 - x0), np.float32)
            local = np.round((pts - (x0, y0)) * 16).astype(np.int32)
            cv2.fillPoly(cov, [local], 1.0, cv2.LINE_AA, 4)
            a = cv2.GaussianBlur(cov, (0, 0), scene.blur)
            a *= sh["alpha"]
            a3 = cv2.merge([a, a, a])
            roi = frame[y0:y1, x0:x1]
            # Shapes keep some of the background texture (shading), not flat colour:
            # roi <- roi * (1 - a) + (colour + 0.35 * (roi - mean)) * a
            roi *= 1.0 - 0.65 * a3
            a3 *= sh["color"].astype(np.float32) - np.float32(0.35 * mean)
            roi += a3
        gain = 1.0 + scene.flicker * np.sin(2 * np.pi * 0.7 * sec)
        oy, ox = offsets[f]
        # frame * gain + noise, rounded and saturated to uint8 in one pass.
        out[f] = cv2.addWeighted(
            frame, gain, noise[oy : oy + height, ox : ox + width], 1.0, 0.0, dtype=cv2.CV_8U
        )
    return out


def _region(width: int, height: int, p: dict) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the spliced region in a ``width`` x ``height`` frame, on the 8x8 grid."""
    rw = max(16, int(round(p["rw"] * width / 8)) * 8)
    rh = max(16, int(round(p["rh"] * height / 8)) * 8)
    x0 = int(np.clip(round((p["cx"] * width - rw / 2) / 8) * 8, 0, (width - rw) // 8 * 8))
    y0 = int(np.clip(round((p["cy"] * height - rh / 2) / 8) * 8, 0, (height - rh) // 8 * 8))
    return x0, y0, rw, rh


def _recompress(
    patch: np.ndarray, p: dict, steps: tuple[str, ...] = _MANIPULATIONS["recompress"]
) -> np.ndarray:
    """The fake's processing of a region (uint8 in, float32 out), those of its `steps` it takes:
    resampled, JPEG-compressed at ``p["quality"]`` (its 8x8 blocks on the frame's grid),
    unsharp-masked."""
    rh, rw = patch.shape[:2]
    if "resample" in steps:
        small = (max(8, int(rw * p["resample"])), max(8, int(rh * p["resample"])))
        patch = cv2.resize(patch, small, interpolation=cv2.INTER_AREA)
        patch = cv2.resize(patch, (rw, rh), interpolation=cv2.INTER_LINEAR)
    if "jpeg" in steps:
        quality = [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])]
        ok, buf = cv2.imencode(".jpg", patch[..., ::-1], quality)
        if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
            raise RuntimeError("JPEG encoding failed")
        patch = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    patch = patch.astype(np.float32)
    if "sharpen" in steps:
        # Unsharp mask on the decoded patch (the "sharpen" step of face-swap mergers and photo
        # editors); it also accentuates the JPEG block edges.
        blur = cv2.GaussianBlur(patch, (0, 0), p["sharpen_sigma"])
        patch += p["sharpen"] * (patch - blur)
    return patch


def _splice(
    host: np.ndarray,
    donor: np.ndarray,
    p: dict,
    manipulated: bool,
    steps: tuple[str, ...] = _MANIPULATIONS["recompress"],
) -> np.ndarray:
    """Blend ``donor`` (resized to the region) into an elliptical region of ``host`` with
    feathered edges and gain ``p["gain"]``; when ``manipulated``, through `_recompress`'s
    `steps` first."""
    _, h, w, _ = host.shape
    x0, y0, rw, rh = _region(w, h, p)
    donor = resize_frames(donor, rw, rh)
    feather = max(2.0, p["feather"] * min(rw, rh))
    mask = np.zeros((rh, rw), np.float32)
    pad = int(np.ceil(feather))
    cv2.ellipse(
        mask,
        ((rw / 2, rh / 2), (rw - 2 * pad - 2, rh - 2 * pad - 2), 0),
        1.0,
        -1,
        cv2.LINE_AA,
    )
    mask = cv2.GaussianBlur(mask, (0, 0), feather / 2)
    inverse = 1.0 - mask
    out = host.copy()
    for f in range(host.shape[0]):
        patch = cv2.convertScaleAbs(donor[f], alpha=p["gain"])
        region = out[f, y0 : y0 + rh, x0 : x0 + rw]
        if manipulated:  # the sharpened patch leaves 0..255: blend in float, then saturate
            blended = cv2.blendLinear(
                _recompress(patch, p, steps), np.float32(region), mask, inverse
            )
            region[...] = np.clip(blended + 0.5, 0, 255)
        else:
            region[...] = cv2.blendLinear(patch, region, mask, inverse)
    return out


def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    """Single-threaded, reproducible options of `codec`'s encoder at about the quality of x264's
    `crf` (18-32)."""
    if codec == "mpeg4":  # MPEG-4 Part 2 at a fixed quantiser, 2 (best) to 7
        quantiser = str(round((crf - 12) / 3))
        return {"qmin": quantiser, "qmax": quantiser, "threads": "1"}
    if codec == "vp9":  # constant quality 30-44 of 63, realtime mode
        return {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8",
                "threads": "1", "row-mt": "0", "lag-in-frames": "0"}  # fmt: skip
    return {
        "crf": str(crf),
        "preset": "veryfast",
        "threads": "1",
        # x264's macroblock-tree rate control reads uninitialised memory in this
        # build (output bytes vary run to run); without it the output is reproducible.
        "x264-params": "mbtree=0",
    }


def _encode(frames: np.ndarray, fps: int, crf: int, gop: int, codec: str = "h264") -> bytes:
    """Encode RGB frames to an MP4 (`codec`, yuv420p) deterministically."""
    n, h, w, _ = frames.shape
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(
            _CODECS[codec], rate=fps, options=_encoder_options(codec, crf)
        )
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = gop
        for i in range(n):
            # BT.601 limited range, like swscale's default for rgb24 -> yuv420p, but faster.
            yuv = cv2.cvtColor(frames[i], cv2.COLOR_RGB2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Archives: deterministic zips (plain or AES) written atomically
# --------------------------------------------------------------------------------------------


class _SeededAESEncrypter(pyzipper.zipfile_aes.AESZipEncrypter):
    """WinZip-AES encrypter whose salt is derived from a seed instead of the OS RNG.

    pyzipper draws a random salt per member, which would make encrypted archives differ run
    to run.  The corpus is synthetic test data, so a salt derived from (seed, archive, member)
    is acceptable and keeps the archives reproducible byte for byte.
    """

    def __init__(self, pwd: bytes, salt: bytes) -> None:
        super().__init__(pwd=pwd, nbits=256)
        self.salt = salt[: self.salt_length]
        key_length = 32
        keymaterial = PBKDF2(pwd, self.salt, count=1000, dkLen=2 * key_length + 2)
        self.encpwdverify = keymaterial[2 * key_length :]
        self.encrypter = AES.new(
            keymaterial[:key_length],
            AES.MODE_CTR,
            counter=Counter.new(nbits=128, little_endian=True),
        )
        self.hmac = HMAC.new(keymaterial[key_length : 2 * key_length], digestmod=SHA1Hash())


class _SeededAESZipFile(pyzipper.AESZipFile):
    def __init__(self, *args, salt_seed: bytes, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._salt_seed = salt_seed
        self._n_encrypted = 0

    def get_encrypter(self):  # pyzipper hook, called once per member written
        self._n_encrypted += 1
        salt = hashlib.sha256(self._salt_seed + b"/%d" % self._n_encrypted).digest()
        return _SeededAESEncrypter(pwd=self.pwd, salt=salt)


class _ArchiveWriter:
    """Writes one zip to ``.<name>.tmp`` and moves it into place on ``commit``."""

    def __init__(self, out_dir: Path, name: str, spec: CorpusSpec) -> None:
        self.final = out_dir / name
        self.tmp = out_dir / f".{name}.tmp"
        self.info_cls = zipfile.ZipInfo
        if spec.password is None:
            self.zf = zipfile.ZipFile(self.tmp, "w")
        else:
            self.info_cls = pyzipper.zipfile_aes.AESZipInfo
            salt_seed = f"fvc-corpus/{spec.seed}/{name}".encode()
            self.zf = _SeededAESZipFile(
                self.tmp, "w", salt_seed=salt_seed, encryption=pyzipper.WZ_AES
            )
            self.zf.setpassword(spec.password.encode())
        if shift := shift_of(spec):  # the default corpus's archives have no comment
            self.zf.comment = json.dumps({"shift": shift}, sort_keys=True).encode()

    def add(self, member: str, data: bytes, compress: bool) -> None:
        info = self.info_cls(member, date_time=ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.create_system = 3
        info.external_attr = 0o644 << 16
        self.zf.writestr(info, data)

    def commit(self) -> None:
        self.zf.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        try:
            self.zf.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _csv_bytes(rows: list[tuple[str, str, str]], split: str | None) -> bytes:
    """A metadata CSV of `rows`; with a `split` column of `split` for every row when set."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if split is None:
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    else:
        writer.writerow([*CSV_HEADER, "split"])
        writer.writerows([*row, split] for row in rows)
    return out.getvalue().encode()


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def _iter_videos(
    cascades: list[_Cascade], spec: CorpusSpec
) -> Iterator[tuple[_Cascade, _Member, bytes]]:
    film = _still if spec.content == "static" else lambda scene: scene
    steps = _MANIPULATIONS[spec.manipulation]
    for casc in cascades:
        noise_rng = np.random.default_rng([spec.seed, 104729, casc.index])
        host_scene = film(_scene(spec.seed, casc.index))
        host = _render(host_scene, casc.width, casc.height, casc.frames, casc.fps, noise_rng)
        # The donor is recorded at the region's native size (a whole frame, of which only
        # the region is used, costs about twice as much to render).
        _, _, rw, rh = _region(casc.width, casc.height, casc.splice)
        donor_rng = np.random.default_rng([spec.seed, 15485863, casc.index])
        donor_scene = film(_scene(spec.seed, casc.index, donor=True))
        donor = _render(donor_scene, rw, rh, casc.frames, casc.fps, donor_rng)
        for m in casc.members:
            frames = resize_frames(host, m.width, m.height)
            frames = _splice(frames, donor, casc.splice, casc.manipulated, steps)
            yield casc, m, _encode(frames, casc.fps, m.crf, m.gop, spec.codec)


T = TypeVar("T")


def progress_steps(
    items: Iterable[T],
    total: int,
    desc: str,
    unit: str,
    stream: TextIO | None = None,
    lines: int = 4,
) -> Iterator[T]:
    """`items`, with their progress on `stream` (default: stderr): a tqdm bar on a terminal;
    elsewhere (a log, a pipe) no bar frames, a line `desc: n/total unit (s)` at each of
    `lines` even steps, the last when all `total` are done."""
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit.rstrip("s"), file=stream)
        return
    start = time.perf_counter()
    marks = {math.ceil(total * step / lines) for step in range(1, lines + 1)}
    for done, item in enumerate(items, 1):
        yield item
        if done in marks:
            seconds = time.perf_counter() - start
            print(f"{desc}: {done}/{total} {unit} ({seconds:.0f} s)", file=stream, flush=True)


def generate_corpus(
    out_dir: Path, spec: CorpusSpec = CorpusSpec(), progress: bool = False
) -> list[GeneratedVideo]:
    """Write a synthetic FVC-layout corpus into ``out_dir`` and describe its videos.

    Creates ``FVC1.zip`` .. ``FVC{n_archives}.zip`` (videos as ``<video_id>.mp4``, a few under
    ``videos/``) and ``Metadata.zip`` (``FVC.csv`` with each cascade's original and
    ``FVC_dup.csv`` with its near-duplicates, header ``cascade_id,video_url,label``, then
    ``split`` when ``spec.split`` is set), each name after ``spec.prefix``.  A shifted spec's
    archives record its `shift_of` in their zip comment.  Existing archives of the same name are
    replaced atomically; output is deterministic in ``spec``.
    """
    _validate(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cascades = _plan(spec)

    writers = {name: _ArchiveWriter(out_dir, name, spec) for name in archive_names(spec)}
    writers[metadata_archive(spec)] = _ArchiveWriter(out_dir, metadata_archive(spec), spec)
    videos: list[GeneratedVideo] = []
    try:
        it = _iter_videos(cascades, spec)
        if progress:
            it = progress_steps(it, spec.n_videos, "synthetic FVC", "videos")
        for casc, m, data in it:
            writers[m.archive].add(m.member, data, compress=False)
            videos.append(
                GeneratedVideo(
                    video_id=m.video_id,
                    archive=m.archive,
                    member=m.member,
                    label=casc.label,
                    cascade_id=casc.cascade_id,
                    platform=m.platform,
                    width=m.width,
                    height=m.height,
                    fps=casc.fps,
                    frames=casc.frames,
                )
            )
        originals = [(c.cascade_id, c.members[0].url, c.label) for c in cascades]
        dups = [(c.cascade_id, m.url, c.label) for c in cascades for m in c.members[1:]]
        meta = writers[metadata_archive(spec)]
        meta.add(ORIGINALS_CSV, _csv_bytes(originals, spec.split), compress=True)
        meta.add(DUPLICATES_CSV, _csv_bytes(dups, spec.split), compress=True)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.commit()
    return videos


def write_videos(out_dir: Path, spec: CorpusSpec) -> list[tuple[Path, str]]:
    """The videos `spec` generates as loose files `<out_dir>/<video_id>.mp4`, in no archive:
    videos the platform has never seen. Returns each file and its label."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for casc, member, data in _iter_videos(_plan(spec), spec):
        path = out_dir / f"{member.video_id}.mp4"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written.append((path, casc.label))
    return written
