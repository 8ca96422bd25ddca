"""Whether a model's stored held-out predictions still match the folds: the same labelled
videos, each scored in the fold it is now in, with the label it now has. A model trained on
request (a network, an embedding model) keeps its table when the folds or labels change; until
it is retrained, its predictions are stale."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fvc_dagster.lib.evaluation.metrics import rows_of_role

# How many video ids a reason names before it says "…".
NAMED = 3


@dataclass(frozen=True)
class Staleness:
    """The videos where a model's predictions and `cv_folds` disagree, by how they disagree."""

    unscored: tuple[str, ...] = ()  # in a fold it scored, not scored
    dropped: tuple[str, ...] = ()  # scored, no longer in the folds (unlabelled or gone)
    moved: tuple[str, ...] = ()  # scored in a fold other than the one they are in now
    relabelled: tuple[str, ...] = ()  # scored with a label other than the one they have now

    @property
    def stale(self) -> bool:
        return bool(self.unscored or self.dropped or self.moved or self.relabelled)

    @property
    def other_videos_or_folds(self) -> bool:
        """Stale for a reason other than labels: its folds held other videos."""
        return bool(self.unscored or self.dropped or self.moved)

    @property
    def reason(self) -> str:
        """What disagrees, in a phrase ("" when nothing does)."""
        parts = [
            f"{len(videos)} {noun}{'s' * (len(videos) > 1)} {what} ({_named(videos)})"
            for noun, what, videos in (
                ("video", "of its folds not scored", self.unscored),
                ("scored video", "no longer in the folds", self.dropped),
                ("video", "scored in another fold", self.moved),
                ("video", "relabelled since scored", self.relabelled),
            )
            if videos
        ]
        return "; ".join(parts)


def _named(videos: tuple[str, ...]) -> str:
    return ", ".join(videos[:NAMED]) + (", …" if len(videos) > NAMED else "")


def prediction_staleness(predictions: pd.DataFrame, cv_folds: pd.DataFrame) -> Staleness:
    """How `predictions` (a model's table: `video_id, fold, label` per held-out clip, folds as
    strings or integers) disagree with `cv_folds` (`video_id, fold, label`), on the folds it
    scored: a model trained on some folds only is compared on those. Rows of folds that
    `cv_folds` no longer has were left behind by a larger fold count and are not compared; its
    test rows (test videos are in no fold) are not compared either."""
    folds = cv_folds[["video_id", "fold", "label"]].astype({"fold": int})
    scored = rows_of_role(predictions)[["video_id", "fold", "label"]].astype({"fold": int})
    scored = scored[scored["fold"].isin(folds["fold"])].drop_duplicates()
    folds = folds[folds["fold"].isin(scored["fold"]) | folds["video_id"].isin(scored["video_id"])]
    both = scored.merge(folds, on="video_id", how="outer", suffixes=("", "_now"), indicator=True)
    matched = both[both["_merge"] == "both"]

    def videos(rows: pd.DataFrame) -> tuple[str, ...]:
        return tuple(sorted(rows["video_id"].astype(str).unique()))

    moved = matched[matched["fold"] != matched["fold_now"]]
    return Staleness(
        unscored=videos(both[both["_merge"] == "right_only"]),
        dropped=videos(both[both["_merge"] == "left_only"]),
        moved=videos(moved),
        relabelled=videos(matched[matched["label"] != matched["label_now"]]),
    )
