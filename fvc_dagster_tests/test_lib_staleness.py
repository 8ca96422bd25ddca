"""A model's stored predictions against the current folds: current, or stale with a reason
that names what changed (videos added or gone, folds moved, labels flipped)."""

import pandas as pd

from fvc_dagster.lib.training.folds import assign_folds
from fvc_dagster.lib.training.staleness import Staleness, prediction_staleness


def labelled(n: int, first: int = 0) -> pd.DataFrame:
    videos = [f"v{i:02d}" for i in range(first, first + n)]
    labels = ["fake" if i % 2 else "real" for i in range(first, first + n)]
    return pd.DataFrame({"video_id": videos, "label": labels, "dup_group": videos})


def predictions_on(folds: pd.DataFrame, clips_per_video: int = 2) -> pd.DataFrame:
    """A model's table scored on `folds`: each video's clips in its fold (a string, as the
    fold-partitioned tables store it), with its label."""
    rows = folds.loc[folds.index.repeat(clips_per_video)]
    return rows.assign(fold=rows["fold"].astype(str), model="m", probability=0.5)


def test_predictions_made_on_the_current_folds_are_current():
    folds = assign_folds(labelled(10), n_folds=5)
    staleness = prediction_staleness(predictions_on(folds), folds)
    assert staleness == Staleness() and not staleness.stale and staleness.reason == ""


def test_new_videos_a_relabel_and_a_gone_video_make_it_stale_and_say_which():
    folds = assign_folds(labelled(10), n_folds=5)
    table = predictions_on(folds)
    grown = assign_folds(pd.concat([labelled(10), labelled(2, first=10)]), 5, previous=folds)
    grown.loc[grown["video_id"] == "v03", "label"] = "real"  # was fake
    grown = grown[grown["video_id"] != "v04"]  # relabelled 'uncertain': no fold any more

    staleness = prediction_staleness(table, grown)

    assert staleness == Staleness(unscored=("v10", "v11"), dropped=("v04",), relabelled=("v03",))
    assert staleness.stale and staleness.other_videos_or_folds
    assert staleness.reason == (
        "2 videos of its folds not scored (v10, v11); 1 scored video no longer in the folds (v04); "
        "1 video relabelled since scored (v03)"
    )
    relabelled = folds.assign(label=folds["label"].mask(folds["video_id"] == "v03", "real"))
    relabel_only = prediction_staleness(table, relabelled)
    assert relabel_only.stale and not relabel_only.other_videos_or_folds


def test_a_new_fold_count_moves_videos_and_rows_of_folds_gone_are_not_compared():
    five = assign_folds(labelled(12), n_folds=5)
    three = assign_folds(labelled(12), n_folds=3)  # every video re-assigned
    staleness = prediction_staleness(predictions_on(five), three)
    both = five.merge(three, on="video_id", suffixes=("_before", ""))
    kept = both[both["fold_before"] < 3]  # rows of folds 3 and 4 are not compared
    assert staleness.moved == tuple(kept.loc[kept["fold_before"] != kept["fold"], "video_id"])
    assert staleness.unscored == tuple(both.loc[both["fold_before"] >= 3, "video_id"])
    assert staleness.moved and staleness.reason.count("…") == 2  # three ids named, then "…"
    # retrained on the three folds, the rows of folds 3 and 4 left in its table are not compared
    retrained = pd.concat([predictions_on(three), predictions_on(five[five["fold"] >= 3])])
    assert not prediction_staleness(retrained, three).stale


def test_a_model_trained_on_some_folds_is_compared_on_those():
    folds = assign_folds(labelled(10), n_folds=5)
    table = predictions_on(folds[folds["fold"] == 0])
    assert not prediction_staleness(table, folds).stale
    grown = assign_folds(pd.concat([labelled(10), labelled(10, first=10)]), 5, previous=folds)
    new_in_fold_0 = grown[(grown["fold"] == 0) & ~grown["video_id"].isin(folds["video_id"])]
    assert prediction_staleness(table, grown).unscored == tuple(new_in_fold_0["video_id"])


def test_test_rows_are_not_compared_with_the_folds():
    folds = pd.DataFrame({"video_id": ["a", "b"], "fold": [0, 1], "label": ["real", "fake"]})
    validation = folds.assign(role="validation")
    test = pd.DataFrame({"video_id": ["t"] * 2, "fold": [0, 1], "label": "fake", "role": "test"})
    assert not prediction_staleness(pd.concat([validation, test]), folds).stale
