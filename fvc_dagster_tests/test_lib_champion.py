"""The champion's library: selection, data fingerprint, refit on labelled videos only, the
detector on video files (good and bad), and the registered pyfunc in a fresh process."""

import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from conftest import write_video
from fvc_dagster.lib.clips.store import read_clip
from fvc_dagster.lib.clips.video_clips import ORIGINAL, make_clips
from fvc_dagster.lib.evaluation.novelty import calibrated_novelty, held_out_distances
from fvc_dagster.lib.features.forensic import HANDCRAFTED_FEATURES, SCALED_FEATURES
from fvc_dagster.lib.models import build_model
from fvc_dagster.lib.serving.champion import (
    labelled_clips,
    network_settings,
    pick_champion,
    refit_baseline,
    training_fingerprint,
    training_novelty,
    why_champion,
)
from fvc_dagster.lib.serving.detector import (
    NOVELTY_FILE,
    SCORE_COLUMNS,
    Detector,
    VideoInput,
    video_input,
)
from fvc_dagster.lib.serving.mlflow_registry import (
    ALIAS,
    REGISTERED_MODEL,
    champion_version,
    register_detector,
    same_lineage,
)
from fvc_dagster.lib.serving.requests import REFUSED, SERVING_ROOT, score_request

FEATURES = [*HANDCRAFTED_FEATURES, *SCALED_FEATURES]


def comparison(rows: list[tuple[str, float, float]], folds: int = 5) -> pd.DataFrame:
    """Rows (model, mean ROC-AUC, low end of its interval), above chance, on every fold and
    current."""
    return pd.DataFrame(rows, columns=["model", "roc_auc_mean", "roc_auc_low"]).assign(
        weights="-", f1_mean=0.5, folds=folds, above_chance=True, stale=False
    )


def test_champion_is_the_best_mean_and_a_tie_goes_to_the_higher_interval():
    table = comparison(
        [("svm", 0.90, 0.8), ("xgboost", 0.93, 0.7), ("logistic_regression", 0.93, 0.8),
         ("ensemble", 0.99, 0.9)]
    )  # fmt: skip
    assert pick_champion(table, 5)["model"] == "logistic_regression"  # no ensemble candidate
    assert pick_champion(table.iloc[::-1], 5)["model"] == "logistic_regression"  # any order
    assert pick_champion(table, 5, "f1")["model"] == "logistic_regression"  # tied: interval
    assert pick_champion(table, 5, candidate=lambda m: True)["model"] == "ensemble"
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        pick_champion(table, 5, "auc")
    with pytest.raises(ValueError, match="no candidate"):
        pick_champion(comparison([("svm", float("nan"), 0.0)]), 5)


def test_a_model_inside_its_chance_band_or_short_of_folds_is_no_candidate():
    table = comparison([("svm", 0.80, 0.7), ("xgboost", 0.95, 0.9), ("naive_cnn", 0.99, 0.9)])
    table.loc[table["model"] == "xgboost", "above_chance"] = False
    table.loc[table["model"] == "naive_cnn", "folds"] = 1  # a network trained on one fold
    assert pick_champion(table, 5)["model"] == "svm"
    with pytest.raises(ValueError, match="above its chance band"):
        pick_champion(table[table["model"] != "svm"], 5)


def test_a_stale_model_is_no_candidate_whatever_its_scores():
    table = comparison([("svm", 0.80, 0.7), ("naive_cnn", 0.99, 0.9)])
    table.loc[table["model"] == "naive_cnn", "stale"] = True  # scored on other folds
    assert pick_champion(table, 5)["model"] == "svm"
    with pytest.raises(ValueError, match="no candidate model is current"):
        pick_champion(table[table["model"] != "svm"], 5)


def test_why_champion_names_its_numbers_and_why_each_model_above_it_was_passed_over():
    table = comparison(
        [("ensemble", 0.99, 0.9), ("naive_cnn", 0.97, 0.9), ("xgboost", 0.96, 0.85),
         ("svm", 0.95, 0.8), ("logistic_regression", 0.93, 0.81)]
    ).assign(roc_auc_std=0.05, roc_auc_high=0.99, chance_band=0.65)  # fmt: skip
    table.loc[table["model"] == "naive_cnn", "folds"] = 1
    table.loc[table["model"] == "xgboost", "above_chance"] = False
    best = pick_champion(table, 5)
    assert best["model"] == "svm"
    why = why_champion(table, "svm", "-")
    assert why.startswith(
        "the highest mean roc_auc (0.950 ± 0.050 over 5 folds) of the models servable from a "
        "video file, scored on every fold, whose ROC-AUC interval [0.800, 0.990] clears its "
        "chance band 0.650; ranked above it: ensemble (not servable from a video file), "
        "naive_cnn (scored on 1 of 5 folds), xgboost (inside its chance band)"
    )
    assert "ranked above it" not in why_champion(table.iloc[3:], "svm", "-")


def clips_and_folds(n_videos: int = 12, unlabelled: int = 3):
    """Feature rows of original and augmented clips of labelled and unlabelled videos."""
    rng = np.random.default_rng(0)
    clips, folds = [], []
    for v in range(n_videos + unlabelled):
        video = f"v{v:02d}"
        label = "fake" if v % 2 else "real"
        for aug in (ORIGINAL, 0, 1):
            shift = 2.0 if label == "fake" else 0.0
            features = dict(zip(FEATURES, rng.normal(shift, 1.0, len(FEATURES)), strict=True))
            clips.append(
                {"video_id": video, "clip_id": f"{video}_{aug}", "aug_index": aug,
                 "sha256": f"{v}{aug}" * 8, **features}
            )  # fmt: skip
        if v < n_videos:
            folds.append({"video_id": video, "fold": v % 3, "label": label})
    return pd.DataFrame(clips), pd.DataFrame(folds)


def test_refit_uses_the_original_clip_of_every_labelled_video_and_no_unlabelled_one():
    clips, folds = clips_and_folds()
    labelled = labelled_clips(clips[["video_id", "clip_id", "aug_index", "sha256"]], folds)
    assert set(labelled["video_id"]) == set(folds["video_id"])  # unlabelled v12-v14 left out
    detector = refit_baseline("logistic_regression", labelled, clips, FEATURES, 16, "letterbox")
    rows = clips[clips["aug_index"] == ORIGINAL].merge(folds, on="video_id")
    # The imputer's medians are those of exactly these rows: 12 labelled originals.
    medians = detector.estimator.named_steps["impute"].statistics_
    assert np.allclose(medians, rows[FEATURES].median().to_numpy())
    p = detector.feature_probabilities(rows)
    assert ((p >= 0.5) == (rows["label"] == "fake")).mean() > 0.9


def test_training_novelty_is_fit_on_the_labelled_originals_and_calibrated_on_their_folds():
    clips, folds = clips_and_folds()
    model, rate = training_novelty(clips, folds)
    rows = clips[clips["aug_index"] == ORIGINAL].merge(folds, on="video_id")
    assert len(rows) == 12  # no augmented clip, no unlabelled video
    assert np.allclose(model.median, rows[FEATURES].median().to_numpy())
    held_out = held_out_distances(rows, rows["fold"], FEATURES)
    assert model.threshold == pytest.approx(np.quantile(held_out, 0.95))
    assert rate == pytest.approx((held_out > model.threshold).mean())


def test_fingerprint_covers_checksums_and_labels_in_any_order():
    clips = pd.DataFrame({"sha256": ["a", "b", "c"], "label": ["fake", "real", "fake"]})
    same = training_fingerprint(clips.iloc[::-1])
    assert training_fingerprint(clips) == same
    relabelled = clips.assign(label=["real", "real", "fake"])
    assert training_fingerprint(relabelled) != same
    assert training_fingerprint(clips.iloc[:2]) != same


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    out = {f"v{i}": write_video(root / f"v{i}.mp4", frames=12, seed=i) for i in range(2)}
    out["mkv"] = write_video(root / "v2.mkv", frames=12, seed=2, size=(48, 64))
    (root / "notes.mp4").write_text("not a video")
    out["bad"] = root / "notes.mp4"
    return out


def baseline_detector(videos, novelty: bool = False) -> Detector:
    """A logistic regression on the three good videos' features (and the same plus 0.5), with
    the novelty model of those rows (three folds) when `novelty`."""
    inputs = [video_input(videos[v], 4) for v in ("v0", "v1", "mkv")]
    rows = pd.DataFrame([i.features for i in inputs] * 4)
    labels = np.array([0, 1, 0] * 4)
    rows = pd.concat([rows, rows + 0.5], ignore_index=True)  # two classes, separable
    from fvc_dagster.lib.models import baseline_pipeline

    pipeline = baseline_pipeline("logistic_regression").fit(
        rows[FEATURES].to_numpy(float), np.concatenate([labels, 1 - labels])
    )
    model = calibrated_novelty(rows, np.arange(len(rows)) % 3, FEATURES) if novelty else None
    return Detector(
        "logistic_regression", "features", pipeline, 4, "letterbox", FEATURES, novelty=model
    )


def test_a_saved_detector_keeps_its_novelty_model_and_scores_each_video_against_it(
    videos, tmp_path
):
    fitted = baseline_detector(videos, novelty=True)
    folder = fitted.save(tmp_path / "detector")
    assert json.loads((folder / NOVELTY_FILE).read_text())["threshold"] > 0
    detector = Detector.load(folder)
    assert detector.novelty == fitted.novelty
    table = detector.score_paths([videos["v0"], videos["bad"]])
    assert table.columns.tolist() == SCORE_COLUMNS
    expected = fitted.novelty.distances(pd.DataFrame([video_input(videos["v0"], 4).features]))
    good, bad = table.to_dict("records")
    assert good["novelty"] == pytest.approx(expected[0])
    assert good["out_of_distribution"] == (expected[0] > fitted.novelty.threshold)
    assert np.isnan(bad["novelty"]) and bad["out_of_distribution"] is None
    # the flag is the distance against the calibrated threshold
    for threshold, flagged in ((0.0, True), (np.inf, False)):
        detector.novelty = replace(fitted.novelty, threshold=threshold)
        assert detector.score_file(videos["v0"])["out_of_distribution"] is flagged
    # a detector saved without a novelty model (an older version) scores without one
    plain = Detector.load(baseline_detector(videos).save(tmp_path / "plain"))
    assert not (tmp_path / "plain" / NOVELTY_FILE).exists() and plain.novelty is None
    row = plain.score_file(videos["v0"])
    assert np.isnan(row["novelty"]) and row["out_of_distribution"] is None


def test_a_detector_scores_video_files_and_names_a_file_it_cannot_read(videos, tmp_path):
    detector = Detector.load(baseline_detector(videos).save(tmp_path / "detector"))
    paths = [videos["v0"], videos["bad"], videos["mkv"]]
    table = detector.score_paths(paths)
    assert table["path"].tolist() == [str(p) for p in paths]
    good = table.drop(index=1)
    assert good["probability_fake"].between(0, 1).all() and good["error"].isna().all()
    assert set(good["label"]) <= {"fake", "real"}
    assert (
        np.isnan(table.loc[1, "probability_fake"]) and str(videos["bad"]) in table.loc[1, "error"]
    )


def test_a_tampered_detector_file_holding_an_untrusted_type_is_refused(videos, tmp_path):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    folder = baseline_detector(videos).save(tmp_path / "detector")
    description = json.loads((folder / "detector.json").read_text())
    assert "trusted_types" not in description  # what to trust is fixed in code
    tampered = baseline_detector(videos).estimator
    tampered.steps.insert(0, ("run", FunctionTransformer(func=os.system)))
    skops.io.dump(tampered, folder / "model.skops")
    # a file that vouches for itself is not believed
    description["trusted_types"] = skops.io.get_untrusted_types(file=folder / "model.skops")
    (folder / "detector.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match=r"model.skops holds types .* refused: posix.system"):
        Detector.load(folder)


@pytest.mark.parametrize("source", ["native", "scaled"])
def test_a_saved_network_detector_gives_the_same_probabilities(videos, tmp_path, source):
    torch.manual_seed(0)
    network = build_model("naive_cnn").eval()
    detector = Detector("naive_cnn", "clip", network, 4, frames=2, pixels=16, source=source)
    inputs = [video_input(videos[v], 4) for v in ("v0", "mkv")]
    assert all(isinstance(i, VideoInput) for i in inputs)
    # The native frames are the original clip as `augmented_clips` stores it.
    rows, _ = make_clips("v0", videos["v0"], 4, tmp_path / "clips")
    assert np.array_equal(inputs[0].native_frames, read_clip(Path(rows[0]["path"])))
    before = detector.probabilities(inputs)
    loaded = Detector.load(detector.save(tmp_path / "network"))
    assert loaded.source == source
    assert np.allclose(loaded.probabilities(inputs), before, atol=1e-6)
    assert len(before) == 2 and ((before > 0) & (before < 1)).all()


def test_a_request_scores_video_bytes_and_files_under_the_root_and_refuses_other_paths(
    videos, tmp_path
):
    detector = baseline_detector(videos)
    root = tmp_path / "served"
    root.mkdir()
    (root / "a.mp4").write_bytes(videos["v0"].read_bytes())
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(videos["v1"].read_bytes())
    (root / "link.mp4").symlink_to(secret)  # inside by name, outside in fact
    refused = ["/etc/passwd", "/no/such/file.mp4", str(secret), str(root / "link.mp4"),
               "../secret.mp4"]  # fmt: skip
    request = pd.DataFrame(
        {"video": [base64.b64encode(videos["v1"].read_bytes()).decode(), "%%", *[None] * 8],
         "name": ["upload.mp4", *[None] * 9],
         "path": [None, None, "a.mp4", str(root / "a.mp4"), str(root / "gone.mp4"), *refused]}
    )  # fmt: skip
    out = score_request(detector, request, root.resolve())
    expected = detector.score_paths([videos["v1"], videos["v0"]])["probability_fake"]
    assert out["path"][0] == "upload.mp4" and out["error"][0] is None
    assert out["probability_fake"][0] == pytest.approx(expected[0])
    assert out["error"][1].startswith("video 1: `video` is not base64")
    assert out["probability_fake"][2:4].tolist() == pytest.approx([expected[1]] * 2)
    assert "No such file" in out["error"][4]  # under the root: its real reason
    # Outside the root: one message, whether the file exists or not.
    assert out["error"][5:].tolist() == [f"{path}: {REFUSED}" for path in refused]
    assert out["probability_fake"][5:].isna().all()
    unset = score_request(detector, request[2:3], None)
    assert unset["error"].tolist() == [f"a.mp4: {REFUSED}"]
    with pytest.raises(ValueError, match="needs a `video` column"):
        score_request(detector, pd.DataFrame({"file": ["a.mp4"]}), root)


PREDICT = """
import json, sys
import mlflow, mlflow.pyfunc, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/fvc-detector@champion")
out = model.predict(pd.DataFrame({"path": sys.argv[2:]}))
print(json.dumps({"rows": out.to_dict("records"), "dagster": "dagster" in sys.modules}))
"""


def test_the_registered_pyfunc_scores_paths_in_a_fresh_process(videos, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("champion-test", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment("champion-test")
    detector = baseline_detector(videos, novelty=True)
    tags = {"model": "logistic_regression", "training_data": "abc"}
    with mlflow.start_run():
        version = register_detector(detector, tags)
    client = MlflowClient()
    current = champion_version(client)
    assert str(current.version) == version and current.aliases == [ALIAS]
    assert same_lineage(current, tags, tags) and not same_lineage(
        current, {**tags, "training_data": "other"}, tags
    )
    expected = detector.score_paths([videos["v0"], videos["bad"]])
    env = {**os.environ, "PYTHONPATH": "", SERVING_ROOT: str(videos["v0"].parent)}
    done = subprocess.run(
        [sys.executable, "-c", PREDICT, uri, str(videos["v0"]), str(videos["bad"])],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dagster"] is False
    good, bad = result["rows"]
    assert good["probability_fake"] == pytest.approx(expected.loc[0, "probability_fake"])
    assert good["label"] == expected.loc[0, "label"] and bad["error"].startswith(str(videos["bad"]))
    assert good["novelty"] == pytest.approx(expected.loc[0, "novelty"])
    assert good["out_of_distribution"] == expected.loc[0, "out_of_distribution"]
    assert REGISTERED_MODEL == "fvc-detector"


def test_a_network_refit_trains_the_epochs_cross_validation_chose_with_every_setting():
    params = {"epochs": "20", "batch_size": "8", "lr": "0.001", "frames": "4", "pixels": "64",
              "weights": "random", "weights_file": "None", "grad_accumulation": "1",
              "epoch_choice": "inner_fold", "source": "native", "train_windows": "random",
              "augmentations": "cutout,flip",
              "fold": "0", "checkpoint_dir": "/x"}  # fmt: skip
    settings = network_settings(params, best_epochs=[3, 4, 6])
    assert settings == {
        "epochs": 4, "batch_size": 8, "lr": 0.001, "frames": 4, "pixels": 64,
        "weights": "random", "grad_accumulation": 1, "epoch_choice": "fixed",
        "source": "native", "train_windows": "random", "augmentations": ["cutout", "flip"],
    }  # fmt: skip
    assert network_settings({**params, "augmentations": ""}, [3])["augmentations"] == []
    fixed = network_settings({**params, "epoch_choice": "fixed"}, [1, 1])
    assert fixed["epochs"] == 20
