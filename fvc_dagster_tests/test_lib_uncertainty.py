import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fvc_dagster.lib.evaluation.figures import metric_bars, rgb
from fvc_dagster.lib.evaluation.metrics import (
    compare_models,
    comparison_markdown,
    comparison_summary,
    fold_metrics_of,
    prediction_rows,
)
from fvc_dagster.lib.evaluation.uncertainty import (
    _tie_tables,
    _weighted_aucs,
    bootstrap_roc_aucs,
    cascade_bootstrap_interval,
    chance_band,
    pooled_roc_auc,
    score_uncertainty,
)


def cascades_of(n_cascades: int, size: int = 1, signal: float = 0.0, seed: int = 0):
    """Labels, scores and cascades: half the cascades fake; every copy in a cascade scores
    alike (duplicates), `signal` added to the fakes' scores."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_cascades) % 2
    scores = rng.normal(size=n_cascades) + signal * labels
    return np.repeat(labels, size), np.repeat(scores, size), np.repeat(np.arange(n_cascades), size)


def width(interval):
    return interval[1] - interval[0]


@pytest.mark.parametrize("seed", range(5))
def test_the_rank_roc_auc_is_sklearns_with_ties(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 200), np.round(rng.random(200), 1)  # ten tied values
    assert pooled_roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    # weighted by copies, as a bootstrap resample is: the AUC of the expanded data set
    copies = rng.integers(0, 3, (4, 200))
    expected = [roc_auc_score(np.repeat(y, c), np.repeat(p, c)) for c in copies]
    got = _weighted_aucs(*_tie_tables(y, p, np.arange(200), 200), copies.T.astype(float))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.isnan(pooled_roc_auc(np.ones(5), p[:5]))


def test_the_interval_covers_the_pooled_auc_and_narrows_with_more_cascades():
    few, many = cascades_of(20, signal=1.0), cascades_of(200, signal=1.0)
    for y, p, groups in (few, many):
        low, high = cascade_bootstrap_interval(y, p, groups)
        assert low < pooled_roc_auc(y, p) < high
    assert width(cascade_bootstrap_interval(*many)) < 0.5 * width(cascade_bootstrap_interval(*few))


def test_the_bootstrap_resamples_whole_cascades():
    y, p, groups = cascades_of(30, signal=1.0)
    copied = cascades_of(30, size=10, signal=1.0)  # every video ten times, one cascade
    as_independent = (copied[0], copied[1], np.arange(300))
    single = width(cascade_bootstrap_interval(y, p, groups))
    assert width(cascade_bootstrap_interval(*copied)) == pytest.approx(single, rel=0.25)
    assert width(cascade_bootstrap_interval(*as_independent)) < 0.5 * single


def test_single_class_resamples_are_skipped_and_counted():
    y, p, groups = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), list("aabb")
    aucs = bootstrap_roc_aucs(y, p, groups, n_resamples=400)
    assert np.nanmin(aucs) == 1.0 and 150 < np.isnan(aucs).sum() < 250  # half draw one cascade
    score = score_uncertainty(y, p, groups, n_resamples=400)
    assert score.skipped_resamples == np.isnan(aucs).sum() and score.low == score.high == 1.0


def test_a_separating_model_is_above_chance_and_a_random_one_is_not():
    y, p, groups = cascades_of(30, size=2, signal=10.0)
    perfect = score_uncertainty(y, p, groups)
    assert perfect.roc_auc == 1.0 and perfect.above_chance and perfect.band < 0.9
    for seed in range(5):
        noise = score_uncertainty(*cascades_of(30, size=2, seed=seed), seed=seed)
        assert not noise.above_chance and noise.low < 0.5 < noise.high


def test_the_chance_band_of_noise_with_25_cascades_sits_well_above_one_half():
    bands = [chance_band(*cascades_of(25, seed=s), seed=s) for s in range(10)]
    assert min(bands) > 0.6 and max(bands) < 0.8  # about 0.69
    more = [chance_band(*cascades_of(50, seed=s), seed=s) for s in range(10)]
    assert 0.5 < np.mean(more) < np.mean(bands)  # about 0.64


def test_the_chance_band_permutes_majority_labels_between_cascades():
    # Cascade "a" is mostly fake, "b" real, "c" fake: a permutation makes one of them real and
    # the other two fake, each cascade's rows together: AUC 0.75 (b real), 1 (c) or 0 (a).
    y, p = np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    groups = np.array(["a", "a", "a", "b", "c"])
    bands = [chance_band(y, p, groups, quantile=q) for q in (0.0, 0.5, 1.0)]
    assert bands == [0.0, 0.75, 1.0]


def test_uncertainty_is_deterministic_for_a_seed():
    y, p, groups = cascades_of(40, size=3, signal=0.5)
    assert score_uncertainty(y, p, groups, seed=3) == score_uncertainty(y, p, groups, seed=3)
    assert cascade_bootstrap_interval(y, p, groups, seed=3) != cascade_bootstrap_interval(
        y, p, groups, seed=4
    )


def predictions_of(model: str, folds: list[tuple[np.ndarray, np.ndarray]], start: int = 0):
    """Prediction rows (with `dup_group`, three videos per cascade) of a model's folds given
    as (cascade labels, cascade scores)."""
    parts, cascade = [], start
    for fold, (labels, scores) in enumerate(folds):
        n = len(labels)
        videos = [f"{model}-c{cascade + i}-v{v}" for i in range(n) for v in range(3)]
        clips = pd.DataFrame(
            {"video_id": videos, "clip_id": [f"{v}-0" for v in videos],
             "label": np.repeat(np.where(labels == 1, "fake", "real"), 3)}
        )  # fmt: skip
        rows = prediction_rows(model, fold, clips, np.repeat(scores, 3), 10, "run")
        parts.append(rows.assign(dup_group=np.repeat([f"c{cascade + i}" for i in range(n)], 3)))
        cascade += n
    return pd.concat(parts, ignore_index=True)


def test_compare_models_uses_sample_std_and_ranks_above_chance_models_first():
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 2
    # steady: a real but modest signal on 60 cascades
    steady = [(labels, rng.normal(size=12) + 2.5 * labels) for _ in range(5)]
    # lucky: perfect inside each fold of two cascades, but its folds sit on different scales,
    # so its pooled predictions barely rank fakes over reals
    lucky = [(np.array([0, 1]), np.array([0.2, 0.3]) + 0.3 * f) for f in range(5)]
    predictions = pd.concat([predictions_of("steady", steady), predictions_of("lucky", lucky)])
    metrics = fold_metrics_of(predictions)
    table = compare_models(metrics, predictions)
    assert table["model"].tolist() == ["steady", "lucky"] and table["rank"].tolist() == [1, 2]
    steady_row, lucky_row = table.iloc[0], table.iloc[1]
    assert lucky_row["roc_auc_mean"] == 1.0 > steady_row["roc_auc_mean"]
    assert steady_row["above_chance"] and not lucky_row["above_chance"]
    fold_aucs = metrics[metrics["model"] == "steady"]["roc_auc"]
    assert steady_row["roc_auc_std"] == pytest.approx(fold_aucs.std(ddof=1), abs=1e-4)
    assert steady_row["roc_auc_std"] != pytest.approx(fold_aucs.std(ddof=0), abs=1e-4)
    assert (steady_row["held_out_videos"], steady_row["held_out_cascades"]) == (180, 60)
    assert (lucky_row["folds"], lucky_row["held_out_cascades"]) == (5, 10)
    assert steady_row["roc_auc_low"] < steady_row["roc_auc_pooled"] < steady_row["roc_auc_high"]
    assert steady_row["roc_auc_low"] > steady_row["chance_band"]
    text = comparison_markdown(table)
    lines = text.splitlines()
    assert lines[0].startswith("| model ") and len({len(line) for line in lines}) == 1
    assert "no: inside chance band" in lines[3] and "| yes " in lines[2]
    assert "1.000 ± 0.000" in lines[3]
    summary = comparison_summary(table).splitlines()
    assert summary[0].startswith("| rank | model ") and len({len(line) for line in summary}) == 1
    assert [line.split("|")[1].strip() for line in summary[2:]] == ["1", "2"]
    assert "| yes " in summary[2] and "no: inside chance band" in summary[3]
    assert "pr_auc" not in summary[0] and "1.000 ± 0.000" in summary[3]
    one_fold = compare_models(metrics[metrics["fold"] == 0], predictions)
    assert one_fold["roc_auc_std"].isna().all() and "± n/a" in comparison_markdown(one_fold)


def test_a_stale_model_is_listed_last_unscored_and_unranked_with_its_reason():
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 2
    predictions = predictions_of("good", [(labels, rng.normal(size=12) + 3 * labels)] * 3)
    stale = pd.DataFrame(
        {"model": ["naive_cnn"], "weights": ["random"], "stale_reason": ["2 videos of its "
         "folds not scored (v10, v11)"]}
    )  # fmt: skip
    table = compare_models(fold_metrics_of(predictions), predictions, stale)
    assert table[["model", "rank", "stale"]].astype(object).values.tolist() == [
        ["good", 1, False],
        ["naive_cnn", pd.NA, True],
    ]
    assert table["stale_reason"].tolist() == ["", stale["stale_reason"][0]]
    assert pd.isna(table.loc[1, "roc_auc_mean"]) and not table.loc[1, "above_chance"]
    lines = comparison_markdown(table).splitlines()
    assert "stale, left out: 2 videos of its folds not scored (v10, v11)" in lines[3]
    assert len({len(line) for line in lines}) == 1
    summary = comparison_summary(table).splitlines()
    assert summary[3].startswith("| -    | naive_cnn ") and "stale, left out" in summary[3]


def test_the_roc_auc_figure_marks_models_inside_the_chance_band():
    rng = np.random.default_rng(1)
    labels = np.arange(12) % 2
    good = [(labels, rng.normal(size=12) + 3 * labels) for _ in range(3)]
    noise = [(labels, rng.normal(size=12)) for _ in range(3)]
    predictions = pd.concat([predictions_of("good", good), predictions_of("noise", noise)])
    table = compare_models(fold_metrics_of(predictions), predictions)
    fig = metric_bars(table)
    bars = fig.axes[0].patches
    hatches = {tick.get_text(): bar.get_hatch() for tick, bar in
               zip(fig.axes[0].get_yticklabels(), bars, strict=False)}  # fmt: skip
    assert hatches == {"good": "", "noise": "//"}
    assert rgb(fig).ndim == 3
