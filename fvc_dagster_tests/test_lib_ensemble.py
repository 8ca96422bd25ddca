"""Stacking over held-out predictions: complete base models only, each fold's meta-learner fit
on the other folds' videos, and the blocking check that fails on a planted leak."""

import numpy as np
import pandas as pd
import pytest

from fvc_dagster.defs.training.checks import no_fold_label_in_its_meta_learner
from fvc_dagster.lib.ensemble import meta_learner_leaks, stack_fold, stacking_table
from fvc_dagster.lib.metrics import prediction_rows


def predictions(n_folds: int = 3, videos_per_fold: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out predictions of a good, a noisy and a partial (fold 0 only) base model."""
    rng = np.random.default_rng(0)
    folds = pd.DataFrame(
        [{"video_id": f"v{f}{i}", "fold": f, "label": "fake" if i % 2 else "real"}
         for f in range(n_folds) for i in range(videos_per_fold)]
    )  # fmt: skip
    rows = []
    for fold, part in folds.groupby("fold"):
        clips = part.assign(clip_id=part["video_id"] + "__orig")
        truth = (clips["label"] == "fake").to_numpy(float)
        good = np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.05, len(clips)), 0, 1)
        rows.append(prediction_rows("good", str(fold), clips, good, 10, "r"))
        rows.append(
            prediction_rows("noisy", str(fold), clips, rng.uniform(size=len(clips)), 10, "r")
        )
        if fold == 0:
            rows.append(prediction_rows("partial", "0", clips, good, 10, "r", weights="random"))
    table = pd.concat(rows, ignore_index=True)
    return table.assign(fold=table["fold"].astype(int)), folds


def test_stacking_uses_complete_base_models_and_the_other_folds_only():
    preds, folds = predictions()
    table, base = stacking_table(preds, [0, 1, 2])
    assert base == ["good", "noisy"]  # partial[random] has fold 0 only
    stacked = stack_fold(table, base, 1)
    assert set(stacked.predictions["video_id"]) == set(folds.loc[folds["fold"] == 1, "video_id"])
    seen_folds = folds.set_index("video_id").loc[stacked.training_rows["video_id"], "fold"]
    assert set(seen_folds) == {0, 2} and (stacked.training_rows["fold"] == 1).all()
    coef = dict(zip(base, stacked.meta_learner[-1].coef_[0], strict=True))
    assert coef["good"] > abs(coef["noisy"])
    truth = stacked.predictions["label"] == "fake"
    assert ((stacked.predictions["probability"] >= 0.5) == truth).all()
    assert meta_learner_leaks(stacked.training_rows, folds).empty


def test_the_blocking_check_passes_and_fails_on_a_planted_leak():
    preds, folds = predictions()
    table, base = stacking_table(preds, [0, 1, 2])
    seen = pd.concat([stack_fold(table, base, f).training_rows for f in range(3)])
    assert no_fold_label_in_its_meta_learner(seen, folds).passed
    planted = pd.DataFrame([{"fold": 2, "video_id": "v21", "clip_id": "v21__orig"}])
    result = no_fold_label_in_its_meta_learner(pd.concat([seen, planted]), folds)
    assert not result.passed and result.metadata["leaked_rows"].value == 1
    assert result.metadata["leaked_examples"].value == planted.to_dict("records")


def test_stacking_needs_a_complete_base_model():
    preds, _ = predictions()
    with pytest.raises(ValueError, match=r"no held-out predictions for folds \[1, 2\]"):
        stacking_table(preds[preds["model"] == "partial"], [0, 1, 2])
    each_misses_a_clip = preds[
        ((preds["model"] == "good") & (preds["clip_id"] != "v00__orig"))
        | ((preds["model"] == "noisy") & (preds["clip_id"] != "v11__orig"))
    ]
    with pytest.raises(ValueError, match="every clip of every fold"):
        stacking_table(each_misses_a_clip, [0, 1, 2])
