"""Stage 1-4 assets through Dagster with a real instance: VAE scaling via resources."""

import dagster as dg
import duckdb
import pytest

from conftest import write_zip
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.clips.assets import augmented_clips, scaled_clips
from fvc_dagster.defs.features.assets import scaled_features
from fvc_dagster.defs.ingest.assets import source_videos
from fvc_dagster.defs.partitions import videos_partitions
from fvc_dagster.defs.resources import ClipScaling

VIDEO = "vaevideo001"


@pytest.fixture
def one_video(tmp_path, video_bytes):
    """A data root with one registered video, and a real instance."""
    (tmp_path / "inbox").mkdir()
    write_zip(tmp_path / "inbox" / "A.zip", {f"{VIDEO}.mp4": video_bytes(frames=6, size=(96, 64))})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(videos_partitions.name, [VIDEO])
        yield build_defs(tmp_path), instance, tmp_path


def materialize_scaled(defs, instance, scaling: ClipScaling):
    resources = {**defs.resources, "scaling": scaling}
    return dg.materialize(
        [source_videos, augmented_clips, scaled_clips, scaled_features],
        partition_key=VIDEO,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


def test_vae_scaling_loads_saved_weights_through_the_resource(one_video, tiny_vae_dir):
    defs, instance, root = one_video
    scaling = ClipScaling(method="vae", vae_weights_dir=str(tiny_vae_dir), device="cpu")
    assert materialize_scaled(defs, instance, scaling).success
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select requested_method, method, original_width, original_height, scaled_width, "
            "scaled_height, canvas_size from fvc.scaled_clips where aug_index = -1"
        ).fetchall()
        n_features = con.execute("select count(*) from fvc.scaled_features").fetchone()[0]
    # 96x64 -> content 256x170, rounded down to multiples of 8 for the VAE
    assert rows == [("vae", "vae", 96, 64, 256, 168, 256)]
    assert n_features == 11


def test_missing_vae_weights_fail_the_step_saying_what_to_put_where(one_video, tmp_path):
    defs, instance, _ = one_video
    empty = tmp_path / "no-weights"
    empty.mkdir()
    result = materialize_scaled(
        defs, instance, ClipScaling(method="vae", vae_weights_dir=str(empty))
    )
    assert not result.success
    message = result.failure_data_for_node("scaled_clips").error.cause.message
    assert str(empty) in message and "save_pretrained" in message
