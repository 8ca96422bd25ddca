"""Tests for the synthetic FVC-layout corpus generator."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import pyzipper

from fvc_dagster import cli
from fvc_dagster.lib.ingest.archives import parse_metadata_csv
from fvc_dagster.lib.training.folds import assign_folds
from fvc_dagster.local import corpus
from fvc_dagster.local.corpus import CorpusSpec, GeneratedVideo, generate_corpus

SMALL = CorpusSpec(n_videos=12, n_archives=2, min_frames=8, max_frames=12)
SPLICE = {
    "rw": 0.5,
    "rh": 0.5,
    "cx": 0.5,
    "cy": 0.5,
    "quality": 40,
    "resample": 0.8,
    "sharpen": 2.0,
    "sharpen_sigma": 1.6,
    "feather": 0.08,
    "gain": 1.0,
}
TINY = CorpusSpec(n_videos=4, n_archives=2, min_frames=4, max_frames=6)
YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
URL_PATTERNS = (
    ("youtube", r"https://www\.youtube\.com/watch\?v=([A-Za-z0-9_-]{11})"),
    ("youtube", r"https://youtu\.be/([A-Za-z0-9_-]{11})"),
    ("facebook", r"https://www\.facebook\.com/[a-z0-9]+/videos/(\d+)/"),
    ("twitter", r"https://twitter\.com/[a-z0-9]+/status/(\d+)"),
)


def _sha256s(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    return list(reader.fieldnames or []), list(reader)


def _metadata(
    directory: Path, password: str | None = None, archive: str = "Metadata.zip"
) -> dict[str, bytes]:
    with pyzipper.AESZipFile(directory / archive) as zf:
        if password:
            zf.setpassword(password.encode())
        return {name: zf.read(name) for name in zf.namelist()}


def _video_bytes(directory: Path, video: GeneratedVideo) -> bytes:
    with zipfile.ZipFile(directory / video.archive) as zf:
        return zf.read(video.member)


def _decode(data: bytes) -> tuple[tuple[str, str], list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        info = (stream.codec_context.name, stream.codec_context.pix_fmt)
        frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    return info, frames


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> tuple[Path, list[GeneratedVideo]]:
    out = tmp_path_factory.mktemp("corpus")
    return out, generate_corpus(out, SMALL)


def test_layout_archives_and_csv_headers(small_corpus):
    out, videos = small_corpus
    assert sorted(p.name for p in out.iterdir()) == ["FVC1.zip", "FVC2.zip", "Metadata.zip"]
    assert len(videos) == SMALL.n_videos

    by_archive = defaultdict(set)
    for v in videos:
        by_archive[v.archive].add(v.member)
        assert v.member in (f"{v.video_id}.mp4", f"videos/{v.video_id}.mp4")
    for name in ("FVC1.zip", "FVC2.zip"):
        with zipfile.ZipFile(out / name) as zf:
            assert set(zf.namelist()) == by_archive[name]
            assert all(i.date_time == (2020, 1, 1, 0, 0, 0) for i in zf.infolist())

    meta = _metadata(out)
    assert sorted(meta) == ["FVC.csv", "FVC_dup.csv"]
    header, originals = _read_csv(meta["FVC.csv"])
    dup_header, dups = _read_csv(meta["FVC_dup.csv"])
    assert meta["FVC.csv"].splitlines()[0] == b"cascade_id,video_url,label"
    assert header == dup_header == ["cascade_id", "video_url", "label"]

    # One original per cascade, duplicates belong to known cascades, every video listed once.
    cascades = {v.cascade_id for v in videos}
    assert sorted(r["cascade_id"] for r in originals) == sorted(cascades)
    assert {r["cascade_id"] for r in dups} <= cascades
    assert len(originals) + len(dups) == len(videos)
    urls = [r["video_url"] for r in originals + dups]
    for v in videos:
        assert sum(v.video_id in u for u in urls) == 1
    labels = {v.cascade_id: v.label for v in videos}
    assert all(labels[r["cascade_id"]] == r["label"] for r in originals + dups)


def test_same_seed_is_byte_identical_and_other_seed_differs(small_corpus, tmp_path):
    out, videos = small_corpus
    first = _sha256s(out)
    assert all(corpus.archive_shift(out / name) == {} for name in first)  # nothing shifted

    again = tmp_path / "again"
    assert generate_corpus(again, SMALL) == videos
    assert _sha256s(again) == first

    # Regenerating over existing archives replaces them atomically with identical bytes.
    (again / "FVC1.zip").write_bytes(b"stale")
    generate_corpus(again, SMALL)
    assert _sha256s(again) == first
    assert not list(again.glob(".*.tmp"))

    other = tmp_path / "other"
    other_videos = generate_corpus(other, CorpusSpec(**{**SMALL.__dict__, "seed": 1}))
    other_sums = _sha256s(other)
    assert all(other_sums[name] != first[name] for name in first)
    assert {v.video_id for v in other_videos} != {v.video_id for v in videos}


@pytest.mark.parametrize("codec", ["mpeg4", "vp9"])
def test_codec_shift_encodes_the_same_videos_with_another_codec_and_records_it(codec, tmp_path):
    default = generate_corpus(tmp_path / "default", TINY)
    spec = corpus.shifted(TINY, [f"codec={codec}"])
    videos = generate_corpus(tmp_path / codec, spec)
    assert videos == default  # the same plan: ids, labels, sizes, frames
    for v in videos:
        (name, pix_fmt), frames = _decode(_video_bytes(tmp_path / codec, v))
        assert (name, pix_fmt) == (codec, "yuv420p")
        assert len(frames) == v.frames and frames[0].shape == (v.height, v.width)
    sums = _sha256s(tmp_path / codec)
    assert all(corpus.archive_shift(tmp_path / codec / name) == {"codec": codec} for name in sums)
    generate_corpus(tmp_path / "again", spec)
    assert _sha256s(tmp_path / "again") == sums


def test_shifts_are_validated_with_the_axes_and_their_values():
    spec = corpus.shifted(TINY, ["codec=vp9", "resolution=320x240", "strength=weak"])
    assert (spec.codec, spec.resolution, spec.strength) == ("vp9", (320, 240), "weak")
    assert corpus.shift_of(spec) == {"codec": "vp9", "resolution": "320x240", "strength": "weak"}
    assert corpus.shift_of(corpus.shifted(TINY, ["codec=h264", "resolution=mixed"])) == {}
    with pytest.raises(ValueError, match="axes: codec: .*manipulation: .*strength: .*resolution"):
        corpus.shifted(TINY, ["bitrate=low"])
    with pytest.raises(ValueError, match="'codec=av1': codec: choose from h264 .*mpeg4, vp9"):
        corpus.shifted(TINY, ["codec=av1"])
    with pytest.raises(ValueError, match="codec is shifted twice"):
        corpus.shifted(TINY, ["codec=vp9", "codec=mpeg4"])
    with pytest.raises(ValueError, match="'resolution=720p': .*expected WIDTHxHEIGHT"):
        corpus.shifted(TINY, ["resolution=720p"])
    with pytest.raises(ValueError, match="even sides of at least 96"):
        corpus.shifted(TINY, ["resolution=64x48"])


def test_failed_generation_leaves_existing_archives_and_no_temp_files(tmp_path, monkeypatch):
    (tmp_path / "FVC1.zip").write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(corpus, "_encode", boom)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        generate_corpus(tmp_path, SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FVC1.zip"]
    assert (tmp_path / "FVC1.zip").read_bytes() == b"previous"


def test_every_video_decodes_with_declared_size_and_frames(small_corpus):
    out, videos = small_corpus
    for v in videos:
        (codec, pix_fmt), frames = _decode(_video_bytes(out, v))
        assert codec == "h264"
        assert pix_fmt == "yuv420p"
        assert len(frames) == v.frames
        assert SMALL.min_frames <= v.frames <= SMALL.max_frames
        assert frames[0].shape == (v.height, v.width)
        assert v.fps in (15, 24, 25, 30)


def test_cascades_hold_near_duplicates_at_other_sizes_or_bitrates(small_corpus):
    out, videos = small_corpus
    groups = defaultdict(list)
    for v in videos:
        groups[v.cascade_id].append(v)
    multi = [g for g in groups.values() if len(g) > 1]
    assert multi, "expected at least one cascade with near-duplicates"

    def thumb(v: GeneratedVideo) -> np.ndarray:
        _, frames = _decode(_video_bytes(out, v))
        return cv2.resize(frames[0], (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32)

    thumbs = {v.video_id: thumb(v) for v in videos}
    for group in multi:
        blobs = [_video_bytes(out, v) for v in group]
        assert len({hashlib.sha256(b).hexdigest() for b in blobs}) == len(group)
        sizes = {(v.width, v.height) for v in group}
        assert len(sizes) > 1 or len({len(b) for b in blobs}) == len(group)
        original = group[0]
        others = [v for v in videos if v.cascade_id != original.cascade_id]
        # Same content: much closer to each other than to any other cascade's video.
        for dup in group[1:]:
            d_same = np.abs(thumbs[original.video_id] - thumbs[dup.video_id]).mean()
            d_other = min(
                np.abs(thumbs[original.video_id] - thumbs[o.video_id]).mean() for o in others
            )
            assert d_same < 6.0
            assert d_same < 0.5 * d_other


def test_labels_cover_real_fake_and_extra_labels(small_corpus):
    _, videos = small_corpus
    labels = [v.label for v in videos]
    assert {"real", "fake"} <= set(labels)
    assert {"uncertain", "parody"} <= set(labels)
    assert set(labels) <= {"real", "fake", "uncertain", "parody"}
    # Near-balanced in videos.
    assert abs(labels.count("real") - labels.count("fake")) <= 4


@pytest.mark.parametrize("seed", range(5))
def test_demo_plan_has_40_balanced_cascades_and_both_classes_in_every_fold(seed):
    # The plan (no rendering) of the demo corpus: at least 40 real/fake cascades, as many of
    # each class (cascades and videos), and every fold of the pipeline's 5-fold assignment
    # holding several cascades of each class.
    cascades = corpus._plan(CorpusSpec(n_videos=60, n_archives=3, seed=seed))
    videos = pd.DataFrame(
        [
            {"video_id": m.video_id, "label": c.label, "dup_group": c.cascade_id}
            for c in cascades
            for m in c.members
        ]
    )
    assert len(videos) == 60
    trainable = videos[videos["label"].isin(["real", "fake"])]
    per_class = trainable.groupby("label")["dup_group"].nunique()
    assert per_class.sum() >= 40
    assert abs(per_class["real"] - per_class["fake"]) <= 1
    n_videos = trainable["label"].value_counts()
    assert abs(n_videos["real"] - n_videos["fake"]) <= 1
    assert trainable.groupby("dup_group").size().max() <= 4

    folds = assign_folds(videos, n_folds=5)
    per_fold = folds.groupby(["fold", "label"])["dup_group"].nunique().unstack(fill_value=0)
    assert per_fold.shape == (5, 2)
    assert (per_fold >= 3).all().all()


def test_default_plan_spreads_cascades_over_every_archive():
    cascades = corpus._plan(CorpusSpec())
    assert any(len({m.archive for m in c.members}) > 1 for c in cascades)
    assert {m.archive for c in cascades for m in c.members} == {
        "FVC1.zip",
        "FVC2.zip",
        "FVC3.zip",
    }


def test_every_cascade_draws_its_splice_alike_and_only_fakes_are_manipulated():
    cascades = corpus._plan(CorpusSpec())
    assert all(c.splice.keys() == SPLICE.keys() for c in cascades)
    assert all(c.manipulated == (c.label in ("fake", "parody")) for c in cascades)
    # Donors are recordings of their own, never another cascade's host scene (content shared
    # across cascades of both labels made content embeddings anti-learn).
    hosts = [corpus._scene(0, c.index).c0 for c in cascades]
    for c in cascades:
        donor = corpus._scene(0, c.index, donor=True).c0
        assert not any(np.allclose(donor, host) for host in hosts)


def test_resolution_sets_every_original_and_leaves_the_rest_of_the_plan():
    mixed = corpus._plan(CorpusSpec())
    hd = corpus._plan(CorpusSpec(resolution=(1280, 720)))
    assert {(c.width, c.height) for c in hd} == {(1280, 720)}
    sizes = {(m.width, m.height) for c in hd for m in c.members}
    assert (1280, 720) in sizes and all(w <= 1280 and h <= 720 for w, h in sizes)
    assert len(sizes) > 1  # near-duplicates still come at smaller sizes
    assert [(c.label, c.frames, [m.video_id for m in c.members]) for c in hd] == [
        (c.label, c.frames, [m.video_id for m in c.members]) for c in mixed
    ]


def test_fvc_generate_writes_a_shifted_test_corpus_and_says_so(tmp_path, capsys):
    argv = ["generate", "--out", str(tmp_path), "--videos", "3", "--archives", "1"]
    shifts = ["--shift", "resolution=160x96", "--shift", "codec=mpeg4", "--split", "test"]
    assert cli.main([*argv, *shifts, "--prefix", "Test"]) == 0
    assert "shifted: codec=mpeg4, resolution=160x96" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TestFVC1.zip", "TestMetadata.zip"]
    with zipfile.ZipFile(tmp_path / "TestFVC1.zip") as zf:
        decoded = [_decode(zf.read(name)) for name in zf.namelist()]
    assert {codec for (codec, _), _ in decoded} == {"mpeg4"}
    assert (96, 160) in {frames[0].shape for _, frames in decoded}
    for name in ("TestFVC1.zip", "TestMetadata.zip"):
        assert corpus.archive_shift(tmp_path / name) == {
            "codec": "mpeg4",
            "resolution": "160x96",
        }
    meta = _metadata(tmp_path, archive="TestMetadata.zip")
    rows = []
    for name in ("FVC.csv", "FVC_dup.csv"):
        header, table = _read_csv(meta[name])
        assert header == [*corpus.CSV_HEADER, "split"]
        rows += table
        parsed = parse_metadata_csv(meta[name].decode(), name)
        assert {(r["split"], r["dup_group"][:5]) for r in parsed} <= {("test", "TestC")}
    assert len(rows) == 3 and {r["split"] for r in rows} == {"test"}
    assert all(r["cascade_id"].startswith("TestC") for r in rows)  # no cascade shared with FVC's


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--shift", "codec=av1"], "codec: choose from h264 (default), mpeg4, vp9"),
        (["--shift", "colour=sepia"], "axes: codec: choose from"),
        (["--shift", "resolution=720p"], "expected WIDTHxHEIGHT"),
        (["--split", "holdout"], "split 'holdout': choose from train, test"),
    ],
)
def test_fvc_generate_refuses_a_bad_shift_or_split_and_writes_nothing(options, message, tmp_path):
    argv = ["generate", "--out", str(tmp_path / "out"), "--videos", "3", "--archives", "1"]
    with pytest.raises(SystemExit, match=re.escape(message)):
        cli.main([*argv, *options])
    assert not (tmp_path / "out").exists()


def test_ids_and_urls_parse_per_platform(small_corpus):
    out, videos = small_corpus
    assert len({v.video_id for v in videos}) == len(videos)
    _, originals = _read_csv(_metadata(out)["FVC.csv"])
    _, dups = _read_csv(_metadata(out)["FVC_dup.csv"])
    url_of = {}
    for row in originals + dups:
        url = row["video_url"]
        hits = [(p, m) for p, rx in URL_PATTERNS if (m := re.fullmatch(rx, url))]
        assert len(hits) == 1, f"unparseable url {url}"
        platform, match = hits[0]
        url_of[match.group(1)] = (platform, url)
    for v in videos:
        assert url_of[v.video_id][0] == v.platform
        if v.platform == "youtube":
            assert YOUTUBE_ID.match(v.video_id)
        else:
            assert v.video_id.isdigit() and 15 <= len(v.video_id) <= 19


def test_ids_mix_platforms_and_url_forms_in_default_plan():
    members = [m for c in corpus._plan(CorpusSpec()) for m in c.members]
    assert {m.platform for m in members} == {"youtube", "facebook", "twitter"}
    assert any(m.url.startswith("https://youtu.be/") for m in members)
    assert any(m.url.startswith("https://www.youtube.com/watch?v=") for m in members)


def test_password_encrypts_every_archive(tmp_path):
    spec = CorpusSpec(n_videos=3, n_archives=2, min_frames=4, max_frames=5, password="s3cret")
    videos = generate_corpus(tmp_path, spec, progress=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["FVC1.zip", "FVC2.zip", "Metadata.zip"]

    for name in names:
        with pyzipper.AESZipFile(tmp_path / name) as zf:
            assert all(i.flag_bits & 0x1 for i in zf.infolist())
            with pytest.raises(RuntimeError):
                zf.read(zf.namelist()[0])  # no password
            zf.setpassword(b"s3cret")
            for member in zf.namelist():
                assert zf.read(member)
        with (
            zipfile.ZipFile(tmp_path / name) as zf,
            pytest.raises((RuntimeError, NotImplementedError)),
        ):
            zf.read(zf.namelist()[0])

    meta = _metadata(tmp_path, password="s3cret")
    assert meta["FVC.csv"].startswith(b"cascade_id,video_url,label\n")
    for v in videos:
        with pyzipper.AESZipFile(tmp_path / v.archive) as zf:
            zf.setpassword(b"s3cret")
            _, frames = _decode(zf.read(v.member))
        assert len(frames) == v.frames

    # Encrypted output is reproducible too (salts derived from the seed).
    again = tmp_path / "again"
    generate_corpus(again, spec)
    assert _sha256s(again) == _sha256s(tmp_path)


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)[88:152, 112:208]


def _boundary_ratio(img: np.ndarray) -> float:
    """Mean horizontal step across the 8x8 grid's column boundaries over the mean elsewhere."""
    d = np.abs(np.diff(_grey(img), axis=1))
    at_boundary = (np.arange(d.shape[1]) % 8) == 7
    return float(d[:, at_boundary].mean() / d[:, ~at_boundary].mean())


@pytest.fixture(scope="module")
def host_and_donor() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    host = corpus._render(corpus._scene(0, 1), 320, 240, 2, 25, rng)
    donor = corpus._render(corpus._scene(0, 1, donor=True), 128, 96, 2, 25, rng)
    return host, donor


def test_real_splice_is_a_composite_with_the_donor_untouched(host_and_donor):
    host, donor = host_and_donor
    real = corpus._splice(host, donor, SPLICE, manipulated=False)
    x, y, w, h = corpus._region(320, 240, SPLICE)
    assert (x, y, w, h) == (80, 64, 160, 120)
    assert real.shape == host.shape and real.dtype == np.uint8
    outside = np.ones(host.shape[1:3], bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(real[:, outside], host[:, outside])

    # The region's centre is the donor's picture (fitted to the region), pixel for pixel.
    rows, cols = slice(h // 2 - 12, h // 2 + 12), slice(w // 2 - 16, w // 2 + 16)
    pasted = corpus.resize_frames(donor, w, h)[:, rows, cols].astype(int)
    in_frame = np.s_[:, y + rows.start : y + rows.stop, x + cols.start : x + cols.stop]
    assert np.abs(real[in_frame] - pasted).max() <= 1
    assert np.abs(host[in_frame] - pasted).mean() > 10
    # No blocking added: the 8x8 grid is no more visible than in the host.
    assert abs(_boundary_ratio(real[0]) - _boundary_ratio(host[0])) < 0.1


def test_fake_splice_leaves_blocking_and_sharpening_in_the_region(host_and_donor):
    host, donor = host_and_donor
    real = corpus._splice(host, donor, SPLICE, manipulated=False)
    fake = corpus._splice(host, donor, SPLICE, manipulated=True)
    unsharpened = corpus._splice(host, donor, {**SPLICE, "sharpen": 0.0}, manipulated=True)
    x, y, w, h = corpus._region(320, 240, SPLICE)
    outside = np.ones(host.shape[1:3], bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(fake[:, outside], host[:, outside])

    # The same composite as the real one, but JPEG blocks on the frame's grid...
    assert _boundary_ratio(fake[0]) > _boundary_ratio(real[0]) + 0.3

    # ...and sharpening halos: more fine detail than the same chain without the unsharp mask.
    def detail(img: np.ndarray) -> float:
        return float(cv2.Laplacian(_grey(img), cv2.CV_32F).std())

    assert detail(fake[0]) > 1.3 * detail(unsharpened[0])


@pytest.mark.parametrize(
    ("family", "blocks", "sharper"),
    [("jpeg", True, False), ("resample", False, False), ("sharpen", False, True)],
)
def test_manipulation_family_takes_only_its_steps(host_and_donor, family, blocks, sharper):
    host, donor = host_and_donor
    real = corpus._splice(host, donor, SPLICE, manipulated=False)
    steps = corpus._MANIPULATIONS[family]
    fake = corpus._splice(host, donor, SPLICE, manipulated=True, steps=steps)
    assert (_boundary_ratio(fake[0]) > _boundary_ratio(real[0]) + 0.3) == blocks

    def detail(img: np.ndarray) -> float:
        return float(cv2.Laplacian(_grey(img), cv2.CV_32F).std())

    assert (detail(fake[0]) > 1.3 * detail(real[0])) == sharper


def test_strength_moves_the_manipulation_and_leaves_the_rest_of_the_plan(host_and_donor):
    plans = {s: corpus._plan(CorpusSpec(strength=s)) for s in ("weak", "default", "strong")}
    quality = {s: [c.splice["quality"] for c in plan] for s, plan in plans.items()}
    assert max(quality["strong"]) < min(quality["default"]) <= max(quality["default"])
    assert max(quality["default"]) < min(quality["weak"])
    for key in ("resample", "sharpen"):
        ranges = {s: [c.splice[key] for c in plan] for s, plan in plans.items()}
        step = -1 if key == "resample" else 1  # strong: a smaller resample, a larger sharpen
        ordered = [ranges[s] for s in ("weak", "default", "strong")][::step]
        assert max(ordered[0]) < min(ordered[1]) and max(ordered[1]) < min(ordered[2])
        # each draw keeps its place in its range
        assert np.argsort(ranges["strong"]).tolist() == np.argsort(ranges["default"]).tolist()
    unchanged = ("rw", "rh", "cx", "cy", "sharpen_sigma", "feather", "gain")
    for strong, default in zip(plans["strong"], plans["default"], strict=True):
        assert [m.video_id for m in strong.members] == [m.video_id for m in default.members]
        assert [strong.splice[k] for k in unchanged] == [default.splice[k] for k in unchanged]

    host, donor = host_and_donor
    blocking = {
        s: _boundary_ratio(
            corpus._splice(host, donor, corpus._at_strength(s, SPLICE), manipulated=True)[0]
        )
        for s in ("weak", "default", "strong")
    }
    assert blocking["weak"] < blocking["default"] < blocking["strong"]


def test_static_content_keeps_the_camera_and_the_shapes_still():
    def motion(scene: corpus._Scene) -> float:
        frames = corpus._render(scene, 160, 96, 12, 25, np.random.default_rng(0))
        return float(np.abs(frames[-1].astype(float) - frames[0].astype(float)).mean())

    scene = corpus._scene(0, 3)
    assert motion(corpus._still(scene)) < 0.3 * motion(scene)


def test_write_videos_gives_the_archived_videos_bytes(small_corpus, tmp_path):
    out, videos = small_corpus
    written = corpus.write_videos(tmp_path, SMALL)
    assert [(p.name, label) for p, label in written] == [
        (f"{v.video_id}.mp4", v.label) for v in videos
    ]
    for (path, _), video in zip(written, videos, strict=True):
        assert path.read_bytes() == _video_bytes(out, video)


@pytest.mark.parametrize(
    "bad",
    [
        {"n_videos": 0},
        {"n_archives": 0},
        {"min_frames": 0},
        {"min_frames": 10, "max_frames": 5},
        {"password": ""},
        {"resolution": (64, 48)},
        {"resolution": (641, 360)},
        {"codec": "av1"},
        {"manipulation": "faceswap"},
        {"strength": "extreme"},
        {"content": "text"},
        {"split": "validation"},
    ],
)
def test_invalid_specs_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        generate_corpus(tmp_path, CorpusSpec(**{**SMALL.__dict__, **bad}))
    assert not list(tmp_path.iterdir())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_step_elsewhere():
    log = io.StringIO()
    assert list(corpus.progress_steps(range(10), 10, "synthetic FVC", "videos", log)) == [
        *range(10)
    ]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 4
    assert [line.split(" (")[0] for line in lines] == [
        f"synthetic FVC: {n}/10 videos" for n in (3, 5, 8, 10)
    ]
    terminal = _Terminal()
    assert list(corpus.progress_steps(range(10), 10, "synthetic FVC", "videos", terminal)) == [
        *range(10)
    ]
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()


def test_generating_into_a_log_writes_lines_not_bar_frames(tmp_path, capsys):
    generate_corpus(tmp_path, SMALL, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[-1].startswith("synthetic FVC: 12/12 videos (")
