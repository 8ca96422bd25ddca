"""Stacking blind to the fold it scores: every learner and the meta-learner fit inside the
training folds, non-negative weights, and a record of the videos each fit used."""

import numpy as np
import pandas as pd
import pytest

from conftest import with_test_rows
from fvc_dagster.lib.models.stacking import NonNegativeLogistic
from fvc_dagster.lib.training.ensemble import (
    BaseLearner,
    stack_fold,
    tabular_learner,
)
from fvc_dagster.lib.training.fold_data import assign_clips, fit_leaks

N_FOLDS = 4
FEATURES = ["signal", "noise"]


@pytest.fixture(scope="module")
def corpus():
    """Forty videos in four folds, an original and an augmented clip each; `signal` tells
    fakes from reals (with noise), `noise` does not."""
    rng = np.random.default_rng(0)
    folds = pd.DataFrame(
        [{"video_id": f"v{f}{i}", "fold": f, "label": "fake" if i % 2 else "real",
          "dup_group": f"c{f}{i}"} for f in range(N_FOLDS) for i in range(10)]
    )  # fmt: skip
    clips = pd.DataFrame(
        [{"video_id": v, "clip_id": f"{v}__{a}", "aug_index": a} for v in folds["video_id"]
         for a in (-1, 0)]
    )  # fmt: skip
    fake = clips["video_id"].map(folds.set_index("video_id")["label"]) == "fake"
    features = clips.assign(
        signal=fake * 1.0 + rng.normal(0, 0.6, len(clips)), noise=rng.normal(0, 1, len(clips))
    )
    return assign_clips(clips, folds, N_FOLDS), features, folds


def learners(features):
    return [tabular_learner(m, features, FEATURES) for m in ("logistic_regression", "xgboost")]


def anti(features) -> BaseLearner:
    """A learner that predicts the opposite of the signal: it anti-learns."""
    signal = features.set_index("clip_id")["signal"]
    return BaseLearner(
        "anti", lambda train, scored: 1 / (1 + np.exp(scored["clip_id"].map(signal)))
    )


def test_each_fold_is_scored_by_fits_that_never_saw_it(corpus):
    training_clips, features, folds = corpus
    for fold in range(N_FOLDS):
        stacked = stack_fold(training_clips, learners(features), fold)
        assert fit_leaks(fold, stacked.record, folds).empty
        assert set(stacked.predictions["video_id"]) == set(
            folds.loc[folds["fold"] == fold, "video_id"]
        )
        assert set(stacked.record["train"]) == set(folds.loc[folds["fold"] != fold, "video_id"])


def test_test_rows_take_no_part_in_stacking(corpus):
    training_clips, features, _ = corpus
    for fold in (0, 2):
        plain, with_test = (
            stack_fold(t, learners(features), fold)
            for t in (training_clips, with_test_rows(training_clips))
        )
        assert plain.record == with_test.record and plain.weights == with_test.weights
        pd.testing.assert_frame_equal(plain.predictions, with_test.predictions)
        # the test clips are scored by the same fits: fold 0's are its held-out clips again
        assert plain.test_predictions.empty
        tested = with_test.test_predictions.set_index("clip_id")["probability"]
        assert not tested.empty
        if fold == 0:
            held_out = plain.predictions.set_index("clip_id")["probability"]
            pd.testing.assert_series_equal(tested.sort_index(), held_out.sort_index())


def test_flipping_a_folds_labels_leaves_its_stacked_predictions_bit_identical(corpus):
    training_clips, features, folds = corpus
    fold_2 = training_clips["video_id"].isin(folds.loc[folds["fold"] == 2, "video_id"])
    flipped = training_clips.assign(
        label=training_clips["label"].where(~fold_2, training_clips["label"].map(
            {"real": "fake", "fake": "real"}))
    )  # fmt: skip
    before, after = (stack_fold(t, learners(features), 2) for t in (training_clips, flipped))
    np.testing.assert_array_equal(
        before.predictions["probability"].to_numpy(), after.predictions["probability"].to_numpy()
    )
    assert before.weights == after.weights
    other = stack_fold(flipped, learners(features), 1)  # fold 2's labels train fold 1
    assert not np.array_equal(
        other.predictions["probability"],
        stack_fold(training_clips, learners(features), 1).predictions["probability"],
    )


def test_an_anti_learning_model_is_chosen_out_inside_the_training_folds(corpus):
    training_clips, features, _ = corpus
    stacked = stack_fold(training_clips, [*learners(features), anti(features)], 0)
    assert stacked.inner_roc_auc["anti"] < 0.5 and "anti" not in stacked.weights
    assert all(w >= 0 for w in stacked.weights.values())


def test_the_meta_learner_never_gives_a_negative_weight():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    x = np.column_stack([y + rng.normal(0, 0.5, 200), -y + rng.normal(0, 0.5, 200)])
    meta = NonNegativeLogistic().fit(x, y)
    assert meta.coef_[0] > 0 and meta.coef_[1] == 0
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression().fit(x, y).coef_[0][1] < 0  # unconstrained, it inverts the second


def plain(features) -> BaseLearner:
    """A logistic regression on the features with no guard of its own against held-out rows."""
    from sklearn.linear_model import LogisticRegression

    table = features.set_index("clip_id")[FEATURES]

    def fit_predict(train, scored):
        y = (train["label"] == "fake").to_numpy(int)
        model = LogisticRegression().fit(table.loc[train["clip_id"]].to_numpy(), y)
        return model.predict_proba(table.loc[scored["clip_id"]].to_numpy())[:, 1]

    return BaseLearner("plain", fit_predict)


def test_a_planted_variant_that_fits_on_the_held_out_fold_is_caught_by_its_record(corpus):
    training_clips, features, folds = corpus
    held_out = training_clips[
        (training_clips["fold"] == 1) & (training_clips["role"] == "validation")
    ]
    planted = pd.concat([training_clips, held_out.assign(role="train")], ignore_index=True)
    leaks = fit_leaks(1, stack_fold(planted, [plain(features)], 1).record, folds)
    assert set(leaks["video_id"]) == set(held_out["video_id"])
    assert set(leaks["role"]) == {"train", "selection"}  # it fit and stacked on them
