"""The champion: the best model of the comparison, refit on every labelled video, with the
lineage that says what it was built from."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from fvc_dagster.lib.clip_data import INPUT_KEYS
from fvc_dagster.lib.clips import ORIGINAL
from fvc_dagster.lib.metrics import METRICS
from fvc_dagster.lib.models import REGISTRY, baseline_pipeline
from fvc_dagster.lib.scoring import Detector
from fvc_dagster.lib.training import POSITIVE, TRAIN, VALIDATION, baseline_training_rows

# The fold id of a refit: its clips are every labelled video's, in no CV fold.
REFIT_FOLD = -1
# What the networks' fold runs record in MLflow that `plan_network` takes back.
NETWORK_PARAMS = (
    "epochs", "batch_size", "lr", "frames", "pixels", "weights", "weights_file",
    "grad_accumulation", "patience",
)  # fmt: skip


def servable(model: str) -> bool:
    """Whether a champion can be refit and scored from a video file alone: the tabular
    baselines and the video networks (the ensemble and the embedding models rank in the
    comparison but are not candidates)."""
    return model in REGISTRY and REGISTRY[model].input in ("features", *INPUT_KEYS)


def pick_champion(
    comparison: pd.DataFrame, metric: str = "roc_auc", candidate=servable
) -> pd.Series:
    """The row of `model_comparison` whose model is a `candidate` with the best mean `metric`;
    ties go to the lower std, then to the model name, so the choice never depends on row
    order."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    mean, std = f"{metric}_mean", f"{metric}_std"
    comparison = comparison[comparison["model"].map(candidate)]
    ranked = comparison.dropna(subset=[mean]).sort_values(
        [mean, std, "model"], ascending=[False, True, True], na_position="last"
    )
    if ranked.empty:
        raise ValueError(f"no model in the comparison has a mean {metric}")
    return ranked.iloc[0]


def labelled_clips(clips: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """The clips (`video_id, clip_id, aug_index, sha256`, ...) of every labelled video (those
    with a fold), with their `label`: what a refit trains on. Unlabelled videos are left out."""
    labels = folds[["video_id", "label"]]
    return clips.merge(labels, on="video_id", how="inner", validate="many_to_one")


def training_fingerprint(clips: pd.DataFrame) -> str:
    """sha256 over the sorted (clip checksum, label) pairs of the clips a refit trains on."""
    pairs = sorted(zip(clips["sha256"].astype(str), clips["label"].astype(str), strict=True))
    digest = hashlib.sha256()
    for sha, label in pairs:
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def code_lineage() -> dict[str, str]:
    """The package version and the git commit of the code (each "unknown" when it cannot be
    told: not installed, or not a checkout)."""
    try:
        version = metadata.version("fvc-dagster")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"package_version": version, "git_commit": commit or "unknown"}


def refit_baseline(
    model: str,
    clips: pd.DataFrame,
    features: pd.DataFrame,
    feature_names: list[str],
    frames_per_clip: int,
    scaling: str,
    seed: int = 0,
) -> Detector:
    """A tabular baseline fit as in cross-validation (same pipeline, seed and rows: the
    original clip of each video) on every labelled video of `clips` (`labelled_clips`)."""
    rows = clips[["clip_id", "aug_index", "label", "video_id"]].merge(
        features.drop(columns=["video_id", "aug_index"], errors="ignore"), on="clip_id"
    )
    train = baseline_training_rows(rows)
    y = (train["label"] == POSITIVE).to_numpy(int)
    if len(set(y)) < 2:
        raise ValueError("the labelled videos hold a single class: nothing to refit")
    pipeline = baseline_pipeline(model, seed).fit(train[feature_names].to_numpy(float), y)
    return Detector(model, "features", pipeline, frames_per_clip, scaling, list(feature_names))


def refit_rows(clips: pd.DataFrame) -> pd.DataFrame:
    """`training_clips`-shaped rows of a refit (fold `REFIT_FOLD`): every labelled clip trains;
    the original clips are also its validation set, so the trainer reports its fit (the epochs
    are those of cross-validation: early stopping has nothing held out to watch)."""
    columns = ["clip_id", "video_id", "aug_index", "label"]
    train = clips[columns].assign(fold=REFIT_FOLD, role=TRAIN)
    originals = clips.loc[clips["aug_index"] == ORIGINAL, columns]
    validation = originals.assign(fold=REFIT_FOLD, role=VALIDATION)
    return pd.concat([train, validation], ignore_index=True)


def network_settings(params: dict[str, Any]) -> dict[str, Any]:
    """`plan_network` settings from a network fold run's MLflow params (strings), patience
    dropped: a refit trains the epochs cross-validation asked for."""
    out: dict[str, Any] = {}
    for key in NETWORK_PARAMS:
        value = params.get(key)
        if value in (None, "None", ""):
            continue
        if key in ("epochs", "batch_size", "frames", "pixels", "grad_accumulation"):
            out[key] = int(value)
        elif key == "lr":
            out[key] = float(value)
        elif key != "patience":
            out[key] = value
    return out


def refit_network(
    model: str,
    clips: pd.DataFrame,
    scaled_clips: pd.DataFrame,
    settings: dict[str, Any],
    root: Path,
    frames_per_clip: int,
    scaling: str,
) -> Detector:
    """A video network trained with its cross-validation settings on every labelled clip;
    resumable like a fold (its checkpoints are under `<root>/checkpoints/<model>/fold-1/`)."""
    from fvc_dagster.lib.network_training import (
        checkpoint_dir,
        fold_clips,
        plan_network,
        train_network,
    )

    plan = plan_network(model, 0, **settings, patience=None)
    data = fold_clips(refit_rows(clips), scaled_clips, [REFIT_FOLD], plan, root / "flow")
    data = data[REFIT_FOLD]
    _, network = train_network(plan, data, checkpoint_dir(root, plan, data))
    return Detector(
        model, "clip", network.cpu().eval(), frames_per_clip, scaling,
        frames=plan.frames, pixels=plan.pixels,
    )  # fmt: skip
