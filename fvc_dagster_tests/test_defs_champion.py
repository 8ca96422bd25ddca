"""The champion through Dagster: the demo with FVC_FOLDS=3 (in its own process, where the fold
count is read at load time) on ten labelled and two unlabelled tiny videos registers
fvc-detector@champion with its lineage and scores every video; then, in this process on the
same instance, a re-run registers nothing, a better model moves the alias and the scores'
automation condition asks for every video again; `fvc score` on good and bad files."""

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from conftest import REPO, query, write_labelled_inbox
from fvc_dagster.cli import main
from fvc_dagster.definitions import build_defs
from fvc_dagster.lib.clips.video_clips import ORIGINAL
from fvc_dagster.lib.evaluation.novelty import FLAG_RATE, held_out_distances
from fvc_dagster.lib.features.rows import CLIP_FEATURES, clip_features
from fvc_dagster.lib.serving.champion import labelled_clips, servable, training_fingerprint
from fvc_dagster.lib.serving.mlflow_registry import (
    ALIAS,
    REGISTERED_MODEL,
    RegistryUnavailable,
    champion_version,
    load_champion,
    local_tracking_uri,
)
from fvc_dagster.lib.serving.requests import REFUSED, SERVING_ROOT
from fvc_dagster.local.corpus import CorpusSpec, shifted, write_videos
from fvc_dagster.local.demo import execute_run_request
from fvc_dagster.local.loopback import free_port

LABELLED = [f"tinyvid{n:04d}" for n in range(10)]  # five real and five fake cascades
UNLABELLED = ["tinynew0001", "tinynew0002"]  # in an archive, not in the metadata


def fvc(root: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(root / "dagster_home"), **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "fvc_dagster.cli", "--data-dir", str(root), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def platform(tmp_path_factory, video_bytes_factory):
    root = tmp_path_factory.mktemp("champion")
    write_labelled_inbox(root / "inbox", LABELLED, video_bytes_factory, unlabelled=UNLABELLED)
    done = fvc(root, "demo", "--models", "none", "--embedding-models", "none", FVC_FOLDS="3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        mlflow.set_tracking_uri(local_tracking_uri(root))
        yield root, done.stdout, build_defs(root), dg.DagsterInstance.get()


def test_three_folds_end_to_end(platform):
    root = platform[0]
    assert sorted(query(root, "select distinct fold from fvc.cv_folds")["fold"]) == [0, 1, 2]
    metrics = query(root, "select * from fvc.fold_metrics")
    assert sorted(metrics["fold"].unique()) == [0, 1, 2]
    assert (query(root, "select folds from fvc.model_comparison")["folds"] == 3).all()


def test_the_champion_is_registered_with_its_lineage(platform):
    root, stdout, _, instance = platform
    version = MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    comparison = query(root, "select * from fvc.model_comparison order by roc_auc_mean desc")
    best = comparison[comparison["model"].map(servable)].reset_index(drop=True)
    tags = version.tags
    assert tags["model"] == best["model"][0] and tags["cv_folds"] == "3"
    assert float(tags["cv_roc_auc_mean"]) == pytest.approx(best["roc_auc_mean"][0], abs=1e-4)
    clips = labelled_clips(
        query(root, "select * from fvc.augmented_clips"), query(root, "select * from fvc.cv_folds")
    )
    assert set(clips["video_id"]) == set(LABELLED)
    assert tags["training_data"] == training_fingerprint(clips)
    assert tags["package_version"] == "0.1.0" and len(tags["source_sha256"]) == 64
    assert json.loads(tags["settings"])["features"] and "cv_roc_auc_interval" in tags
    (run,) = instance.get_runs(dg.RunsFilter(job_name="champion"))
    assert tags["dagster_run_id"] == run.run_id
    assert MlflowClient().get_run(version.run_id).info.status == "FINISHED"
    assert "fvc-detector@champion" in stdout and "fresh" in stdout
    # the demo's three videos, sent to the registered model as bytes, are scored
    assert stdout.count("P(fake) = ") == 3 and "P(fake) = nan" not in stdout


def test_every_video_labelled_or_not_gets_the_champions_score(platform):
    root = platform[0]
    scores = query(root, "select * from fvc.video_scores order by video_id")
    assert sorted(scores["video_id"]) == sorted(LABELLED + UNLABELLED)
    assert scores.set_index("video_id").loc[UNLABELLED, "label"].isna().all()
    assert scores["probability_fake"].between(0, 1).all() and (scores["model_version"] == "1").all()
    # The registered model on the stored video file gives the score the asset stored.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SERVING_ROOT, str(root))
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{ALIAS}")
    path = query(root, f"select path from fvc.source_videos where video_id = '{UNLABELLED[0]}'")
    predicted = model.predict(pd.DataFrame({"path": path["path"]}))
    stored = scores.set_index("video_id").loc[UNLABELLED[0]]
    assert predicted["probability_fake"][0] == pytest.approx(stored["probability_fake"], abs=1e-9)
    # and the same distance from the training videos: scoring measures what calibration did
    assert predicted["novelty"][0] == pytest.approx(stored["novelty"], rel=1e-6)


def test_the_champion_flags_about_five_percent_of_held_out_training_videos(platform):
    root, _, _, instance = platform
    features = clip_features(
        query(root, "select * from fvc.handcrafted_features"),
        query(root, "select * from fvc.scaled_features"),
    )
    folds = query(root, "select * from fvc.cv_folds")
    rows = folds.merge(features[features["aug_index"] == ORIGINAL], on="video_id")
    assert len(rows) == len(LABELLED)
    held_out = held_out_distances(rows, rows["fold"], CLIP_FEATURES)
    threshold = np.quantile(held_out, 1 - FLAG_RATE)
    model, version = load_champion(local_tracking_uri(root))
    novelty = model.unwrap_python_model().detector.novelty
    assert novelty.threshold == pytest.approx(threshold)
    assert version.tags["novelty_threshold"] == f"{threshold:.4f}"
    rate = (held_out > threshold).mean()
    assert version.tags["novelty_held_out_flag_rate"] == f"{rate:.4f}"
    # every score row carries the distance and the flag, and the run's metadata counts flags
    scores = query(root, "select * from fvc.video_scores").set_index("video_id")
    on_rows = novelty.distances(rows.set_index("video_id").loc[LABELLED])
    assert scores.loc[LABELLED, "novelty"].to_numpy() == pytest.approx(on_rows)
    assert (scores["out_of_distribution"] == (scores["novelty"] > threshold)).all()
    records = instance.fetch_materializations(dg.AssetKey("video_scores"), limit=100).records
    latest = {r.partition_key: r for r in reversed(records)}  # newest first: keep the newest
    assert set(latest) == set(scores.index)
    for run_id in {r.run_id for r in latest.values()}:
        batch = [r for r in latest.values() if r.run_id == run_id]
        counted = batch[0].asset_materialization.metadata["out_of_distribution"].value
        assert counted == scores.loc[[r.partition_key for r in batch], "out_of_distribution"].sum()


def test_fvc_score_flags_videos_of_another_codec_and_content_in_words(platform, tmp_path, capsys):
    root = platform[0]
    spec = shifted(
        CorpusSpec(n_videos=5, n_archives=1, min_frames=8, max_frames=10, seed=7),
        ["codec=mpeg4", "content=static"],
    )
    paths = [str(path) for path, _ in write_videos(tmp_path, spec)]
    assert main(["--data-dir", str(root), "score", "--json", *paths]) == 0
    rows = json.loads(capsys.readouterr().out)
    flagged = [row["out_of_distribution"] for row in rows]
    # Measured: 5 of 5 flagged (distances 7e4 to 2e5 against a threshold of 13.4; the two
    # unlabelled videos like the training ones: 5.8 and 6.0), the training videos being tiny
    # H.264 ones of moving noise.
    assert np.mean(flagged) >= 0.8, [(row["path"], row["novelty"]) for row in rows]
    assert main(["--data-dir", str(root), "score", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, row in zip(lines, rows, strict=True):
        caution = (
            f"but this video is unlike the videos the model was trained on (distance "
            f"{row['novelty']:.1f} > "
        )
        assert (caution in line) == row["out_of_distribution"], line
        assert line.endswith("treat the score with caution") == row["out_of_distribution"]


def test_fvc_score_scores_good_files_and_names_a_bad_one(platform, tmp_path, capsys):
    root = platform[0]
    good = query(root, f"select path from fvc.source_videos where video_id = '{LABELLED[1]}'")
    good = good["path"][0]
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert main(["--data-dir", str(root), "score", good, str(bad)]) == 1
    out, err = capsys.readouterr()
    assert f"{good}: P(fake) = " in out and "fvc-detector v1" in out and str(bad) not in out
    (line,) = [x for x in err.splitlines() if x.startswith("fvc score:")]
    assert str(bad) in line
    assert main(["--data-dir", str(root), "score", "--json", good]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["version"] == "1" and 0 <= row["probability_fake"] <= 1 and row["error"] is None


def wait_for_ping(url: str, server: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {timeout} s:\n{log.read_text()[-3000:]}")


def test_make_serve_scores_posted_video_bytes_and_refuses_paths_outside_its_root(
    platform, tmp_path
):
    root = platform[0]
    video = query(root, f"select path from fvc.source_videos where video_id = '{LABELLED[2]}'")
    video = video["path"][0]
    port, log = free_port(), tmp_path / "serve.log"
    scripts = str(Path(sys.executable).parent)  # not on PATH: as typed, without an activated venv
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != scripts)
    env = {**os.environ, "PATH": path, "FVC_DATA_DIR": str(root), SERVING_ROOT: str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "-o", ".venv/bin/fvc", "serve", f"SERVE_PORT={port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(url, server, log)
        encoded = base64.b64encode(Path(video).read_bytes()).decode()
        records = [{"video": encoded, "name": "upload.mp4"}, {"path": video},
                   {"path": "/etc/passwd"}, {"path": "/no/such/file.mp4"}]  # fmt: skip
        answer = requests.post(f"{url}/invocations", json={"dataframe_records": records},
                               timeout=120)  # fmt: skip
        assert answer.status_code == 200, answer.text
        upload, by_path, passwd, missing = answer.json()["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    champion = MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    assert f"fvc-detector v{champion.version}" in log.read_text()
    model, _ = load_champion(local_tracking_uri(root))
    (expected,) = model.unwrap_python_model().detector.score_paths([video]).to_dict("records")
    assert upload["path"] == "upload.mp4"
    for key in ("probability_fake", "novelty"):
        assert upload[key] == pytest.approx(expected[key]) and by_path[key] == upload[key]
    assert upload["out_of_distribution"] == expected["out_of_distribution"]
    assert by_path["path"] == video
    # The same refusal whether or not the file exists: nothing learnt of the server's files.
    assert passwd["error"] == f"/etc/passwd: {REFUSED}"
    assert missing["error"] == f"/no/such/file.mp4: {REFUSED}"


def test_a_rerun_registers_nothing_and_a_better_model_moves_the_alias(platform):
    root, _, defs, instance = platform
    client = MlflowClient()
    first = client.get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    rerun = execute_run_request(defs, "champion", dg.RunRequest(), instance)
    assert rerun.success and not rerun.output_for_node("champion_model")["newly_registered"][0]
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == 1

    scores = dg.AssetSelection.assets("video_scores")
    before = dg.evaluate_automation_conditions(defs, instance, asset_selection=scores)
    other = "svm" if first.tags["model"] != "svm" else "xgboost"
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        # `other` is now the only model above chance, with a perfect mean
        con.execute(
            "update fvc.model_comparison set above_chance = (model = $other), "
            "roc_auc_mean = if(model = $other, 1.0, roc_auc_mean)",
            {"other": other},
        )
    better = execute_run_request(defs, "champion", dg.RunRequest(), instance)
    assert better.success
    now = client.get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    assert now.tags["model"] == other and int(now.version) == int(first.version) + 1
    assert (
        client.get_model_version(REGISTERED_MODEL, first.version).tags["model"]
        == (first.tags["model"])
    )  # the old version stays: roll back with set_registered_model_alias
    after = dg.evaluate_automation_conditions(
        defs, instance, asset_selection=scores, cursor=before.cursor
    )
    requested = after.get_requested_partitions(dg.AssetKey("video_scores"))
    assert requested == set(LABELLED + UNLABELLED)


def test_fvc_score_reads_the_registry_mlflow_tracking_uri_names_and_says_when_it_is_down(
    platform, tmp_path, capsys, monkeypatch
):
    root = platform[0]
    video = query(root, f"select path from fvc.source_videos where video_id = '{LABELLED[1]}'")
    elsewhere = ["--data-dir", str(tmp_path / "empty"), "score", video["path"][0]]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_tracking_uri(root))
    assert main(elsewhere) == 0  # the champion of the registry the variable names
    assert ": P(fake) = " in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(elsewhere) == 2
    err = capsys.readouterr().err
    assert "the MLflow registry at http://127.0.0.1:9 did not answer" in err
    with pytest.raises(RegistryUnavailable):  # never taken for "no champion yet"
        champion_version(MlflowClient("http://127.0.0.1:9"))
    assert champion_version(MlflowClient(local_tracking_uri(tmp_path)), "no-such-model") is None


def test_a_champion_run_against_an_unreachable_registry_fails_naming_it_and_registers_once(
    platform, monkeypatch
):
    root, _, defs, instance = platform
    client = MlflowClient(local_tracking_uri(root))
    versions = len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'"))
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_at = {"tracking_uri": down, "artifact_root": str(root / "mlartifacts")}
    failed = defs.resolve_job_def("champion").execute_in_process(
        instance=instance,
        run_config={"resources": {"mlflow": {"config": mlflow_at}}},
        raise_on_error=False,
    )
    assert not failed.success
    error = failed.failure_data_for_node("champion_model").error
    assert f"the MLflow registry at {down} did not answer" in error.to_string()
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == versions
    # The registry is back: the champion it holds is current, nothing is registered again.
    back = execute_run_request(defs, "champion", dg.RunRequest(), instance)
    assert back.success and not back.output_for_node("champion_model")["newly_registered"][0]
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == versions
