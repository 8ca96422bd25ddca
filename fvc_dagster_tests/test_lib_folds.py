import numpy as np
import pandas as pd

from fvc_dagster.lib.training.folds import (
    assign_folds,
    folds_missing_a_class,
    groups_in_several_folds,
    labelled_test_videos,
    videos_keeping_their_fold,
)


def corpus(n_groups: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = "fake" if g % 2 else "real"
        for d in range(int(rng.integers(1, 4))):
            rows.append({"video_id": f"g{g}_{d}", "label": label, "dup_group": f"g{g}"})
    rows.append({"video_id": "unlabelled", "label": None, "dup_group": "x"})
    return pd.DataFrame(rows)


def test_cascades_stay_in_one_fold_and_every_fold_has_both_classes():
    folds = assign_folds(corpus(40), n_folds=5)
    assert groups_in_several_folds(folds) == []
    assert folds_missing_a_class(folds, 5) == {}
    assert "unlabelled" not in set(folds["video_id"])
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 3  # balanced


def test_folds_are_deterministic():
    pd.testing.assert_frame_equal(assign_folds(corpus(30)), assign_folds(corpus(30)))


def test_new_archives_do_not_move_existing_videos():
    before = assign_folds(corpus(30))
    grown = pd.concat([corpus(30), corpus(45).iloc[len(corpus(30)) - 1 :]]).drop_duplicates(
        "video_id"
    )
    after = assign_folds(grown, previous=before[["video_id", "fold"]])
    kept = before.merge(after, on="video_id", suffixes=("_before", "_after"))
    assert len(kept) == len(before) and (kept["fold_before"] == kept["fold_after"]).all()
    assert len(after) > len(before) and groups_in_several_folds(after) == []
    assert videos_keeping_their_fold(after, before) == len(before)


def test_videos_keeping_their_fold_counts_only_unmoved_previous_videos():
    previous = pd.DataFrame({"video_id": ["a", "b", "c"], "fold": [0, 1, 2]})
    now = pd.DataFrame({"video_id": ["a", "b", "d"], "fold": [0, 3, 1]})  # b moved, c gone
    assert videos_keeping_their_fold(now, previous) == 1
    assert videos_keeping_their_fold(now, None) == 0


def test_a_new_video_joins_its_cascades_existing_fold():
    before = assign_folds(corpus(20))
    newcomer = pd.DataFrame([{"video_id": "g3_new", "label": "fake", "dup_group": "g3"}])
    after = assign_folds(pd.concat([corpus(20), newcomer]), previous=before)
    fold_of_g3 = before.loc[before["dup_group"] == "g3", "fold"].iloc[0]
    assert after.set_index("video_id").loc["g3_new", "fold"] == fold_of_g3


def test_the_checks_detect_straddling_cascades_and_one_class_folds():
    folds = pd.DataFrame(
        {
            "video_id": list("abc"),
            "fold": [0, 1, 1],
            "label": ["real", "real", "fake"],
            "dup_group": ["g", "g", "h"],
        }
    )
    assert groups_in_several_folds(folds) == ["g"]
    assert folds_missing_a_class(folds, 3) == {0: ["fake"], 2: ["real", "fake"]}


def test_test_videos_get_no_fold_and_leave_the_train_videos_folds_as_they_were():
    train = corpus(30).assign(split="train")
    test = corpus(12, seed=1).assign(video_id=lambda t: "test_" + t["video_id"], split="test")
    with_test = pd.concat([train, test], ignore_index=True)
    pd.testing.assert_frame_equal(assign_folds(with_test), assign_folds(train))
    before = assign_folds(train)  # and when the test videos arrive later
    pd.testing.assert_frame_equal(assign_folds(with_test, previous=before), before)


def test_labelled_test_videos_are_the_real_and_fake_videos_of_the_test_split():
    videos = pd.DataFrame(
        {
            "video_id": ["a", "b", "c", "d"],
            "label": ["fake", None, "real", "real"],
            "split": ["test", "test", "train", "test"],
        }
    )
    assert labelled_test_videos(videos).to_dict("records") == [
        {"video_id": "a", "label": "fake"},
        {"video_id": "d", "label": "real"},
    ]
