"""Leakage-free fold assignment: stratified by label, grouped by duplicate cascade, stable."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from fvc_dagster.lib.ingest.splits import TEST, TRAIN

TRAINABLE_LABELS = ("real", "fake")


def _stable_order(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def assign_folds(
    videos: pd.DataFrame,
    n_folds: int = 5,
    seed: int = 0,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Assign every labelled train video a fold; all videos of a duplicate group share one fold.

    `videos` has `video_id, label, dup_group` and, from `source_videos`, `split`: test videos
    get no fold and take no part in placing the others. Groups already placed in `previous`
    (`video_id, fold`) keep their fold, so new archives never move existing videos. New groups are
    placed greedily, largest first, in the fold whose class counts they balance best.
    Returns `video_id, fold, label, dup_group` for the real/fake videos, sorted by video id.
    """
    trainable = videos["label"].isin(TRAINABLE_LABELS) & (videos.get("split", TRAIN) != TEST)
    labelled = videos[trainable][["video_id", "label", "dup_group"]]
    labelled = labelled.assign(dup_group=labelled["dup_group"].fillna(labelled["video_id"]))
    counts = np.zeros((n_folds, len(TRAINABLE_LABELS)))
    group_fold: dict[str, int] = {}
    if previous is not None and len(previous):
        known = labelled.merge(previous[["video_id", "fold"]], on="video_id")
        for group, folds in known.groupby("dup_group")["fold"]:
            group_fold[group] = int(folds.mode().iloc[0])
    per_group = (
        labelled.assign(cls=labelled["label"].map(TRAINABLE_LABELS.index))
        .groupby(["dup_group", "cls"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(len(TRAINABLE_LABELS)), fill_value=0)
    )
    for group, fold in group_fold.items():
        if group in per_group.index and fold < n_folds:
            counts[fold] += per_group.loc[group].to_numpy()
    totals = np.maximum(per_group.to_numpy().sum(axis=0), 1)
    new_groups = [g for g in per_group.index if g not in group_fold or group_fold[g] >= n_folds]
    new_groups.sort(key=lambda g: (-int(per_group.loc[g].sum()), _stable_order(str(g), seed)))
    for group in new_groups:
        sizes = per_group.loc[group].to_numpy()
        load = (counts + sizes) / totals  # share of each class each fold would hold
        score = load.max(axis=1) + 1e-3 * load.sum(axis=1)
        fold = int(np.argmin(score))
        group_fold[group] = fold
        counts[fold] += sizes
    return (
        labelled.assign(fold=labelled["dup_group"].map(group_fold).astype(int))
        .sort_values("video_id")
        .reset_index(drop=True)[["video_id", "fold", "label", "dup_group"]]
    )


def labelled_test_videos(videos: pd.DataFrame) -> pd.DataFrame:
    """`video_id, label` of the real/fake videos of the test split (`videos`: `source_videos`)."""
    test = videos["label"].isin(TRAINABLE_LABELS) & (videos["split"] == TEST)
    return videos.loc[test, ["video_id", "label"]].sort_values("video_id").reset_index(drop=True)


def groups_in_several_folds(folds: pd.DataFrame) -> list[str]:
    """Duplicate groups whose videos sit in more than one fold (leakage)."""
    spread = folds.groupby("dup_group")["fold"].nunique()
    return sorted(spread[spread > 1].index.astype(str))


def folds_missing_a_class(folds: pd.DataFrame, n_folds: int) -> dict[int, list[str]]:
    """Folds (of 0..n_folds-1) lacking a class, with the classes they lack."""
    present = folds.groupby("fold")["label"].agg(set).to_dict()
    return {
        fold: [c for c in TRAINABLE_LABELS if c not in present.get(fold, set())]
        for fold in range(n_folds)
        if not set(TRAINABLE_LABELS) <= present.get(fold, set())
    }


def videos_keeping_their_fold(folds: pd.DataFrame, previous: pd.DataFrame | None) -> int:
    """How many videos of `previous` (`video_id, fold`) have the same fold in `folds`."""
    if previous is None or previous.empty:
        return 0
    both = folds[["video_id", "fold"]].merge(
        previous[["video_id", "fold"]], on="video_id", suffixes=("", "_before")
    )
    return int((both["fold"] == both["fold_before"]).sum())
