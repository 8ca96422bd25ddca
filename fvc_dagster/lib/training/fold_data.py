"""Which clips train and validate each fold, and baseline training on their features.

A fold validates on the original clips of its held-out videos only; it trains on every clip
(original and augmented, with their scaled versions' features) of the other folds' videos, of
which the tabular baselines fit the original clips (`baseline_training_rows` says why). The
original clips of test videos (`lib.ingest.splits`) are `test` rows of every fold: to be scored
by each fold's model, never fit on (every fitter selects its rows by role).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fvc_dagster.lib.clips.store import CLIP_SUFFIX
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.metrics import TEST, VALIDATION

if TYPE_CHECKING:
    pass

POSITIVE = "fake"
TRAIN = "train"
# A fit's record of the videos it used: those it was fit on, those that chose its epoch or its
# stacking, and those it scored (`fit_record`).
FIT_ROLES = ("train", "selection", "scored")


def fit_record(**videos: pd.Series | list[str]) -> dict[str, list[str]]:
    """The record a fit makes of the videos it used, by role of `FIT_ROLES` (each the
    `video_id`s of the rows it passed to its estimator or scored): sorted, distinct."""
    unknown = set(videos) - set(FIT_ROLES)
    if unknown:
        raise ValueError(f"unknown fit roles {sorted(unknown)}; roles are {FIT_ROLES}")
    return {role: sorted(set(map(str, videos.get(role, [])))) for role in FIT_ROLES}


def fit_leaks(fold: int, record: dict[str, list[str]], folds: pd.DataFrame) -> pd.DataFrame:
    """What breaks fold `fold`'s blindness in its fit record, checked against `folds`
    (`video_id, fold`): a video the fit trained or selected on that the fold holds out, or a
    video it scored that the fold does not hold out. Columns `fold, role, video_id,
    video_fold` (NaN: the video has no fold); empty when the fit was blind."""
    placed = folds.set_index("video_id")["fold"]
    rows = pd.DataFrame(
        [(fold, role, v) for role in FIT_ROLES for v in record.get(role, [])],
        columns=["fold", "role", "video_id"],
    )
    rows["video_fold"] = rows["video_id"].map(placed)
    used = rows["role"] != "scored"
    leaked = used & (rows["video_fold"] == fold)
    stray = ~used & (rows["video_fold"] != fold)
    return rows[leaked | stray].reset_index(drop=True)


def assign_clips(
    clips: pd.DataFrame,
    folds: pd.DataFrame,
    n_folds: int,
    test_videos: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows `fold, role, clip_id, video_id, aug_index, label` for every fold.

    `clips` has `video_id, clip_id, aug_index`; `folds` has `video_id, fold, label`. Videos without
    a fold (unlabelled, test) are in no fold's train or validation rows. `test_videos`
    (`video_id, label`) add a `test` row to every fold for each of their original clips.
    """
    columns = ["video_id", "clip_id", "aug_index"]
    labelled = clips[columns].merge(
        folds[["video_id", "fold", "label"]].rename(columns={"fold": "video_fold"}), on="video_id"
    )
    tests = clips.loc[clips["aug_index"] == ORIGINAL, columns].merge(
        pd.DataFrame(test_videos, columns=["video_id", "label"]), on="video_id"
    )
    parts = []
    for fold in range(n_folds):
        held_out = labelled["video_fold"] == fold
        parts.append(labelled[~held_out].assign(fold=fold, role=TRAIN))
        original = labelled["aug_index"] == ORIGINAL
        parts.append(labelled[held_out & original].assign(fold=fold, role=VALIDATION))
        parts.append(tests.assign(fold=fold, role=TEST))
    columns = ["fold", "role", "clip_id", "video_id", "aug_index", "label"]
    return pd.concat(parts, ignore_index=True)[columns].sort_values(["fold", "role", "clip_id"])


def own_folds(training_clips: pd.DataFrame) -> pd.Series:
    """Each video's fold (the fold whose validation rows hold it), by video id."""
    held_out = training_clips[training_clips["role"] == VALIDATION]
    return held_out.drop_duplicates("video_id").set_index("video_id")["fold"]


def selection_fold(fold: int, folds: list[int]) -> int:
    """The training fold that chooses fold `fold`'s epoch: the next of `folds`, cyclically (a
    whole fold, so the split is grouped by cascade and stratified like the folds)."""
    ordered = sorted(folds)
    if fold not in ordered or len(ordered) < 3:
        raise ValueError(f"fold {fold}: an inner selection fold needs 3 or more folds, got "
                         f"{ordered}; train with epoch_choice 'fixed'")  # fmt: skip
    return ordered[(ordered.index(fold) + 1) % len(ordered)]


def clip_owners(store: Path) -> pd.DataFrame:
    """`clip_id, owner` for every clip file in `store`, which holds `<video_id>/<clip_id>.avi`.

    The owner is the folder the file lives in, so it comes from the files, not from any table.
    """
    files = [p for p in store.glob(f"*/*{CLIP_SUFFIX}") if not p.name.startswith(".")]
    return pd.DataFrame(
        {"clip_id": [p.stem for p in files], "owner": [p.parent.name for p in files]},
        columns=["clip_id", "owner"],
    )


@dataclass
class LeakReport:
    """Why training rows cannot be trusted; the check passes when all three are empty."""

    leaked: pd.DataFrame  # `fold, clip_id, video_id, owner`: a file's owner the fold holds out
    unknown: pd.DataFrame  # `fold, clip_id, video_id, missing_from`: a store has no file for it
    conflicting: pd.DataFrame  # `clip_id, owners`: its files live under several videos

    @property
    def passed(self) -> bool:
        return self.leaked.empty and self.unknown.empty and self.conflicting.empty


def leak_report(
    assignments: pd.DataFrame,
    folds: pd.DataFrame,
    store_owners: dict[str, pd.DataFrame],
) -> LeakReport:
    """Check every training row against the owners its clip's files give in each store.

    `store_owners` maps a store name (`clips`, `scaled`) to its `clip_owners`. A training clip
    must have a file in every store (it trains on features of both) and all of them must lie
    under one video; a clip missing from a store is unknown, one under several videos is
    conflicting, and any owner of a clip that the fold holds out is a leak. The row's own
    `video_id` is never trusted.
    """
    training = assignments.loc[assignments["role"] == TRAIN, ["fold", "clip_id", "video_id"]]
    owners = pd.concat(
        [table.assign(store=name) for name, table in store_owners.items()], ignore_index=True
    )
    clips = training["clip_id"].drop_duplicates()
    present = owners[owners["clip_id"].isin(clips)]

    stores_of = present.groupby("clip_id")["store"].agg(set)
    missing = {
        clip: ", ".join(s for s in store_owners if s not in stores_of.get(clip, set()))
        for clip in clips
    }
    unknown = training.assign(missing_from=training["clip_id"].map(missing))
    unknown = unknown[unknown["missing_from"] != ""]

    owner_sets = present.groupby("clip_id")["owner"].agg(lambda o: sorted(set(o)))
    conflicting = owner_sets[owner_sets.map(len) > 1].rename("owners").reset_index()

    held_out = folds[["video_id", "fold"]].rename(columns={"video_id": "owner"})
    leaked = (
        training.merge(present[["clip_id", "owner"]].drop_duplicates(), on="clip_id")
        .merge(held_out, on=["owner", "fold"])
        .sort_values(["fold", "clip_id", "owner"])
    )
    return LeakReport(
        leaked=leaked.reset_index(drop=True),
        unknown=unknown.sort_values(["fold", "clip_id"]).reset_index(drop=True),
        conflicting=conflicting,
    )


def rows_using_test_videos(rows: pd.DataFrame, test_videos: pd.DataFrame) -> pd.DataFrame:
    """The rows of `cv_folds` or `training_clips` that give a test video (`test_videos`:
    `video_id, reason`) a fold, or a role other than `test`, with the reason it is test."""
    used = rows["video_id"].isin(test_videos["video_id"])
    if "role" in rows:
        used &= rows["role"] != TEST
    return rows[used].merge(test_videos, on="video_id").reset_index(drop=True)


@dataclass
class FoldData:
    train: pd.DataFrame  # feature rows of the training clips, with `label`
    validation: pd.DataFrame  # feature rows of the held-out original clips
    feature_names: list[str]
    test: pd.DataFrame = field(default_factory=pd.DataFrame)  # of the test videos' clips

    def xy(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return rows[self.feature_names].to_numpy(float), (rows["label"] == POSITIVE).to_numpy(int)


def fold_data(
    assignments: pd.DataFrame, features: pd.DataFrame, fold: int, feature_names
) -> FoldData:
    """The training, validation and test feature rows of one fold (features joined per
    clip)."""
    rows = assignments[assignments["fold"] == fold].merge(
        features.drop(columns=["video_id", "aug_index"], errors="ignore"), on="clip_id"
    )
    return FoldData(
        train=rows[rows["role"] == TRAIN].reset_index(drop=True),
        validation=rows[rows["role"] == VALIDATION].reset_index(drop=True),
        feature_names=list(feature_names),
        test=rows[rows["role"] == TEST].reset_index(drop=True),
    )
