"""A fitted model as a detector of fake videos: a video file in, P(fake) out, through the
pipeline's own code.

`video_input` runs what the per-video assets run on a video, for its original clip only: probe
(PyAV), K uniformly sampled frames (the original clip, at the video's own size), the 15
handcrafted features with the source's codec cues, the clip scaled into the 256-pixel canvas
(letterbox, or the VAE when the model was trained on VAE-scaled clips), and the 8 scaled-clip
features. A `Detector` scores those inputs, or the same
rows read back from the warehouse (`video_scores` does), with a tabular baseline or a video
network, and says how far the video's features lie from the training videos' (its novelty
model, `lib.evaluation.novelty`). `Detector.save` writes a folder (a JSON description, the
novelty model as JSON and the model's files, never a pickle) that `Detector.load` reads back in
a process that has only this package's library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.clips.scaling import ScaledClip, letterbox
from fvc_dagster.lib.evaluation.novelty import NoveltyModel
from fvc_dagster.lib.features.forensic import handcrafted_features, scaled_features
from fvc_dagster.lib.features.rows import codec_cues
from fvc_dagster.lib.ingest.video import probe_video, sample_frames

DESCRIPTION = "detector.json"
SKOPS_FILE = "model.skops"
NOVELTY_FILE = "novelty.json"
THRESHOLD = 0.5  # P(fake) at or above which a video is labelled fake, as in the CV metrics
# A scored video: its path (or name), P(fake), label, its features' distance from the training
# videos' (`novelty`) and whether that lies beyond the calibrated threshold, and the one-line
# reason it was not scored.
SCORE_COLUMNS = ["path", "probability_fake", "label", "novelty", "out_of_distribution", "error"]


@dataclass
class VideoInput:
    """What a detector reads of one video: the features of its original clip, that clip
    scaled into its canvas (frames and content box) and the clip itself (native frames)."""

    features: dict[str, float]
    scaled_frames: np.ndarray | None
    content_box: tuple[int, int, int, int] | None
    native_frames: np.ndarray | None = None


def video_input(
    path: str | Path, frames_per_clip: int, scaling: str = "letterbox", vae_weights_dir=None
) -> VideoInput:
    """The detector input of a video file, computed as the per-video assets compute it."""
    path = Path(path)
    probe = probe_video(path, name=path.name)
    clip = sample_frames(path, frames_per_clip, name=path.name, index=probe.index)
    features = handcrafted_features(clip, codec_cues(probe.as_row()))
    scaled = _scaler(scaling, vae_weights_dir)(clip)
    x, y, w, h = scaled.content_box
    features |= scaled_features(
        scaled.frames,
        original_size=scaled.original_size,
        scaled_size=(w, h),
        content_box=scaled.content_box,
    )
    return VideoInput(features, scaled.frames, scaled.content_box, clip)


def _scaler(method: str, vae_weights_dir) -> Any:
    if method == "letterbox":
        return letterbox
    if method == "vae":
        from fvc_dagster.lib.clips.scaling import VaeScaler

        vae = VaeScaler.from_directory(vae_weights_dir)
        return lambda clip: _no_fallback(vae.scale(clip))
    raise ValueError(f"unknown scaling method {method!r}")


def _no_fallback(scaled: ScaledClip) -> ScaledClip:
    if scaled.method != "vae":
        raise RuntimeError(f"the VAE could not scale the clip: {scaled.fallback_reason}")
    return scaled


@dataclass
class Detector:
    """A fitted model and what it needs to score a video. `kind` "features" (a tabular
    pipeline over `feature_names`) or "clip" (a network over `frames` x `pixels` clips of
    registry `input` "clip" or "clip+box", reading the `source` it was trained on: "native"
    windows of the original clip or the "scaled" clip); `frames_per_clip` and `scaling` are
    the pipeline settings the model was trained with; `novelty` the training videos' feature
    distribution with its calibrated threshold (None for a detector saved without one)."""

    model_name: str
    kind: str
    estimator: Any = field(repr=False)
    frames_per_clip: int
    scaling: str = "letterbox"
    feature_names: list[str] = field(default_factory=list)
    frames: int | None = None
    pixels: int | None = None
    source: str = "scaled"
    threshold: float = THRESHOLD
    novelty: NoveltyModel | None = field(default=None, repr=False)

    def probabilities(self, inputs: Sequence[VideoInput]) -> np.ndarray:
        """P(fake) of each input."""
        if not inputs:
            return np.empty(0)
        if self.kind == "features":
            return self.feature_probabilities(pd.DataFrame([i.features for i in inputs]))
        return self._clip_probabilities(inputs)

    def feature_probabilities(self, rows: pd.DataFrame) -> np.ndarray:
        """P(fake) of feature rows (columns `feature_names`), e.g. read from the warehouse."""
        missing = [n for n in self.feature_names if n not in rows]
        if missing:
            raise KeyError(f"{self.model_name}: feature rows lack {missing}")
        x = rows[self.feature_names].to_numpy(float)
        return self.estimator.predict_proba(x)[:, 1]

    def _clip_probabilities(self, inputs: Sequence[VideoInput]) -> np.ndarray:
        import torch

        from fvc_dagster.lib.models import get_spec
        from fvc_dagster.lib.training.clip_data import ClipDataset, normaliser
        from fvc_dagster.lib.training.trainer import call_model

        spec = get_spec(self.model_name)
        if self.source == "native":
            rows = [{"frames": i.native_frames, "label": 0.0} for i in inputs]
        else:
            rows = [{"frames": i.scaled_frames, "label": 0.0, **_box_columns(i.content_box)}
                    for i in inputs]  # fmt: skip
        dataset = ClipDataset.for_input(
            rows, spec.input, self.frames, self.pixels, source=self.source, cache_clips=False
        )
        batch = _collate(dataset)
        self.estimator.eval()
        with torch.no_grad():
            prepared = normaliser(spec.normalisation)(batch)
            logits = call_model(self.estimator, prepared, _input_keys(spec.input))
        return torch.sigmoid(logits.float()).reshape(-1).numpy()

    def labels(self, probabilities: np.ndarray) -> list[str]:
        return ["fake" if p >= self.threshold else "real" for p in probabilities]

    def novelty_columns(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """`novelty` (the distance from the training videos) and `out_of_distribution` (beyond
        the calibrated threshold) of each feature row; NaN and None without a novelty model."""
        if self.novelty is None:
            return [{"novelty": np.nan, "out_of_distribution": None}] * len(rows)
        distances = self.novelty.distances(rows)
        return [{"novelty": float(d), "out_of_distribution": bool(d > self.novelty.threshold)}
                for d in distances]  # fmt: skip

    def score_file(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """The row (`SCORE_COLUMNS`) of one video file, named `name` (default: its path); a
        file that cannot be scored gets its error, naming it, and no probability."""
        name = str(path) if name is None else name
        try:
            given = video_input(path, self.frames_per_clip, self.scaling)
            p = float(self.probabilities([given])[0])
            (novelty,) = self.novelty_columns(pd.DataFrame([given.features]))
        except Exception as exc:  # one bad file is that file's result, not the batch's
            return failed_row(name, f"{type(exc).__name__}: {exc}")
        return {"path": name, "probability_fake": p, "label": self.labels([p])[0], **novelty,
                "error": None}  # fmt: skip

    def score_paths(self, paths: Iterable[str | Path]) -> pd.DataFrame:
        """One `score_file` row per path: a bad file does not stop the others."""
        return pd.DataFrame([self.score_file(path) for path in paths], columns=SCORE_COLUMNS)

    def description(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("estimator")
        out.pop("novelty")  # its own file
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the detector into `folder` (created): `detector.json`, `novelty.json` when it
        has a novelty model, and the model's files (a tabular pipeline as skops, a network as
        `lib.models.network_files`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "features":
            import skops.io

            with replacing(folder / SKOPS_FILE) as file:
                skops.io.dump(self.estimator, file)
        else:
            from fvc_dagster.lib.models import get_spec
            from fvc_dagster.lib.models.network_files import save_network
            from fvc_dagster.lib.training.clip_data import model_options

            options = model_options(get_spec(self.model_name).input, self.pixels)
            save_network(self.estimator, self.model_name, options, folder)
        if self.novelty is not None:
            with replacing(folder / NOVELTY_FILE) as file:
                file.write_text(self.novelty.to_json())
        with replacing(folder / DESCRIPTION) as file:
            file.write_text(json.dumps(self.description(), indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Detector:
        """The detector `save` wrote: a skops file holding a type outside the baselines'
        `SKOPS_TRUSTED_TYPES` is refused (ValueError naming it) before anything is built."""
        folder = Path(folder)
        description = json.loads((folder / DESCRIPTION).read_text())
        # Versions registered before the trusted types were fixed in code listed their own.
        description.pop("trusted_types", None)
        if description["kind"] == "features":
            import skops.io

            from fvc_dagster.lib.models.baselines import trusted_skops_types

            file = folder / SKOPS_FILE
            estimator = skops.io.load(file, trusted=trusted_skops_types(file))
        else:
            from fvc_dagster.lib.models.network_files import load_network

            estimator = load_network(folder)
        novelty = folder / NOVELTY_FILE  # absent from versions registered before novelty
        novelty = NoveltyModel.from_json(novelty.read_text()) if novelty.exists() else None
        return cls(estimator=estimator, novelty=novelty, **description)


def failed_row(name: str, reason: str) -> dict[str, Any]:
    """The `SCORE_COLUMNS` row of a video `name` that was not scored, and why."""
    return {"path": name, "probability_fake": np.nan, "label": None, "novelty": np.nan,
            "out_of_distribution": None, "error": f"{name}: {reason}"}  # fmt: skip


def _box_columns(box: tuple[int, int, int, int]) -> dict[str, int]:
    x, y, w, h = box
    return {"content_x": x, "content_y": y, "scaled_width": w, "scaled_height": h}


def _input_keys(model_input: str) -> tuple[str, ...]:
    from fvc_dagster.lib.training.clip_data import INPUT_KEYS

    return INPUT_KEYS[model_input]


def _collate(dataset) -> dict:
    from torch.utils.data import default_collate

    return default_collate([dataset[i] for i in range(len(dataset))])
