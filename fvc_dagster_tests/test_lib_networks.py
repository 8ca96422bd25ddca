"""A network's fold clips: what trains, what chooses the epoch, what is scored once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import with_test_rows
from fvc_dagster.lib.clips.store import write_clip
from fvc_dagster.lib.training.fold_data import assign_clips, selection_fold
from fvc_dagster.lib.training.networks import checkpoint_dir, fold_clips, plan_network

N_FOLDS = 4


@pytest.fixture
def stored(tmp_path):
    """Eight videos in four folds (a real and a fake each), an original and one augmented clip
    per video, their scaled files on disk."""
    videos = pd.DataFrame(
        {"video_id": [f"v{n}" for n in range(8)], "fold": [n // 2 for n in range(8)],
         "label": ["real", "fake"] * 4, "dup_group": [f"c{n}" for n in range(8)]}
    )  # fmt: skip
    clips = pd.DataFrame(
        [{"video_id": v, "clip_id": f"{v}__{a}", "aug_index": a} for v in videos["video_id"]
         for a in (-1, 0)]
    )  # fmt: skip
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    scaled = clips.assign(
        path=[str(tmp_path / "scaled" / f"{c}.avi") for c in clips["clip_id"]],
        content_x=0, content_y=0, scaled_width=16, scaled_height=16,
    )  # fmt: skip
    scaled["sha256"] = [write_clip(frames, Path(p)) for p in scaled["path"]]
    return assign_clips(clips, videos, N_FOLDS), scaled, videos


def plan(**settings):
    return plan_network("naive_cnn", 0, **{"weights": "random", "frames": 2, "pixels": 16,
                                            **settings})  # fmt: skip


def test_fold_k_trains_without_its_selection_fold_and_scores_only_its_own_videos(stored, tmp_path):
    training_clips, scaled, videos = stored
    fold_of = videos.set_index("video_id")["fold"]
    for fold, data in fold_clips(training_clips, scaled, range(N_FOLDS), plan(), tmp_path).items():
        chooser = selection_fold(fold, list(range(N_FOLDS)))
        assert set(data.held_out_rows["video_id"].map(fold_of)) == {fold}
        assert set(data.selection_rows["video_id"].map(fold_of)) == {chooser}
        assert set(data.selection_rows["aug_index"]) == {-1}
        assert set(data.train_rows["video_id"].map(fold_of)) == set(range(N_FOLDS)) - {
            fold,
            chooser,
        }
        assert len(data.train) == len(data.train_rows) and len(data.held_out) == 2


def test_test_rows_neither_train_nor_choose_the_epoch_nor_are_scored(stored, tmp_path):
    training_clips, scaled, _ = stored
    folds = range(N_FOLDS)
    plain = fold_clips(training_clips, scaled, folds, plan(), tmp_path)
    with_test = fold_clips(with_test_rows(training_clips), scaled, folds, plan(), tmp_path)
    for fold in folds:
        assert plain[fold].record == with_test[fold].record
        assert checkpoint_dir(tmp_path, plan(), plain[fold]) == checkpoint_dir(
            tmp_path, plan(), with_test[fold]
        )


def test_test_clips_are_scored_as_the_held_out_clips_are(stored, tmp_path):
    from fvc_dagster.lib.training.networks import score_clips, train_network

    training_clips, scaled, _ = stored
    fixed = plan(epoch_choice="fixed", epochs=1, source="scaled")
    # fold 0's test rows are its own held-out clips again
    data = fold_clips(with_test_rows(training_clips), scaled, [0], fixed, tmp_path)[0]
    _, network, held_out = train_network(fixed, data, tmp_path / "checkpoint")
    tested = pd.Series(score_clips(fixed, network, data.test), index=data.test_rows["clip_id"])
    scored = pd.Series(held_out, index=data.held_out_rows["clip_id"])
    assert len(tested) == len(scored) > 0
    np.testing.assert_allclose(tested.sort_index(), scored.sort_index(), rtol=1e-5)


def test_a_fixed_epoch_count_trains_on_every_other_fold_and_selects_nothing(stored, tmp_path):
    training_clips, scaled, videos = stored
    data = fold_clips(training_clips, scaled, [1], plan(epoch_choice="fixed", epochs=3), tmp_path)[
        1
    ]
    assert data.selection is None and data.selection_rows.empty
    assert set(data.train_rows["video_id"]) == set(videos.loc[videos["fold"] != 1, "video_id"])
    assert plan(epoch_choice="fixed").train.patience is None


def test_the_held_out_labels_take_no_part_in_the_checkpoint(stored, tmp_path):
    training_clips, scaled, videos = stored
    fold_2 = training_clips["video_id"].isin(videos.loc[videos["fold"] == 2, "video_id"])
    flipped = training_clips.assign(label=training_clips["label"].where(
        ~fold_2, training_clips["label"].map({"real": "fake", "fake": "real"})
    ))  # fmt: skip
    same = [fold_clips(t, scaled, [2], plan(), tmp_path)[2] for t in (training_clips, flipped)]
    assert checkpoint_dir(tmp_path, plan(), same[0]) == checkpoint_dir(tmp_path, plan(), same[1])
    other = fold_clips(flipped, scaled, [1], plan(), tmp_path)[1]  # fold 2 trains fold 1
    assert checkpoint_dir(tmp_path, plan(), other) != checkpoint_dir(
        tmp_path, plan(), fold_clips(training_clips, scaled, [1], plan(), tmp_path)[1]
    )


def test_networks_train_on_the_originals_and_the_named_augmentations_only(stored, tmp_path):
    training_clips, scaled, _ = stored  # aug_index 0 is rotation: it resamples every pixel
    default = fold_clips(training_clips, scaled, [0], plan(), tmp_path)[0]
    assert set(default.train_rows["aug_index"]) == {-1}
    named = fold_clips(training_clips, scaled, [0], plan(augmentations=["rotation"]), tmp_path)[0]
    assert set(named.train_rows["aug_index"]) == {-1, 0}
    assert checkpoint_dir(tmp_path, plan(), default) != checkpoint_dir(
        tmp_path, plan(augmentations=["rotation"]), named
    )
    with pytest.raises(ValueError, match="unknown augmentations \\['sharpen'\\]"):
        plan(augmentations=["sharpen"])
    with pytest.raises(ValueError, match="source must be"):
        plan(source="resized")


def test_native_networks_score_the_centre_window_and_train_on_the_chosen_one(stored, tmp_path):
    training_clips, scaled, _ = stored
    native = fold_clips(training_clips, scaled, [0], plan(pixels=8), tmp_path)[0]
    assert {native.train.clips.crops, native.selection.clips.crops} == {"centre"}
    drawn = fold_clips(training_clips, scaled, [0], plan(pixels=8, train_windows="random"),
                       tmp_path)[0]  # fmt: skip
    assert drawn.train.clips.crops == "random" and drawn.held_out.clips.crops == "centre"
    assert native.held_out[0]["clip"].shape == (3, 2, 8, 8)
    resized = fold_clips(training_clips, scaled, [0], plan(source="scaled"), tmp_path)[0]
    assert resized.train.clips is resized.held_out.clips and resized.train.clips.source == "scaled"
    missing = scaled[scaled["aug_index"] == 0]
    with pytest.raises(ValueError, match="no file in augmented_clips .* materialize"):
        fold_clips(training_clips, missing, [0], plan(), tmp_path)


def test_a_fold_network_is_logged_without_pickle_and_loads_back_with_the_same_predictions(
    stored, tmp_path
):
    import mlflow

    from fvc_dagster.lib.models import get_spec
    from fvc_dagster.lib.training.clip_data import normaliser
    from fvc_dagster.lib.training.networks import train_network
    from fvc_dagster.lib.training.tracking import load_logged_network, log_network_result
    from fvc_dagster.lib.training.trainer import predict

    training_clips, scaled, _ = stored
    fixed = plan(epoch_choice="fixed", epochs=1, source="scaled")
    data = fold_clips(training_clips, scaled, [1], fixed, tmp_path)[1]
    result, network, held_out = train_network(fixed, data, tmp_path / "checkpoint")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.create_experiment("networks", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("networks").experiment_id):
        log_network_result(result, network, fixed, {"roc_auc": 0.5})
        run_id = mlflow.active_run().info.run_id
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "model")}
    assert logged == {"model/network.json", "model/weights.safetensors"}  # no pickled module
    loaded = load_logged_network(run_id)
    prepare = normaliser(get_spec(fixed.model).normalisation)
    again = predict(loaded, data.held_out, fixed.train, prepare=prepare)
    assert len(held_out) == 2 and np.allclose(again, held_out, atol=1e-6)
