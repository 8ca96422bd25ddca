"""The demo's inbox scan keeps the archive sensor's cursor where the daemon of `make dev` keeps
it: it starts from the stored cursor and stores the one the sensor returns."""

from pathlib import Path

import dagster as dg
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

from conftest import labelled_metadata, write_labelled_inbox, write_zip
from fvc_dagster.definitions import build_defs
from fvc_dagster.lib.ingest.inbox import ScanState
from fvc_dagster.local.demo import WORKSPACE, scan_inbox

VIDEOS = ["cursorvid01", "cursorvid02"]


def daemon_sensor_ids(instance: dg.DagsterInstance) -> tuple[str, str]:
    """The (origin id, selector id) under which the daemon reads archive_sensor's state: the
    code location loaded from workspace.yaml in a server process, as `make dev` loads it."""
    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(WORKSPACE)])) as workspace:
        (location,) = workspace.create_request_context().get_code_location_entries().values()
        (repository,) = location.code_location.get_repositories().values()
        sensor = repository.get_sensor("archive_sensor")
    return sensor.get_remote_origin_id(), sensor.selector_id


def test_the_demo_scans_from_the_daemons_cursor_and_stores_the_one_it_advances(
    tmp_path: Path, video_bytes, monkeypatch
):
    data = tmp_path / "data"
    monkeypatch.setenv("FVC_DATA_DIR", str(data))  # the server's definitions
    inbox = write_labelled_inbox(data / "inbox", VIDEOS, video_bytes)
    defs = build_defs(data)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        (batch,) = scan_inbox(defs, instance)
        ids = daemon_sensor_ids(instance)
        stored = ScanState.from_cursor(instance.get_instigator_state(*ids).instigator_data.cursor)
        assert set(stored.sources) == set(VIDEOS) and set(stored.metadata) == set(VIDEOS)

        # A label changes: only a scan that starts from the stored cursor (the metadata it
        # read) sees a change and re-runs that video; the cursor it stores counts it.
        write_zip(inbox / "Metadata.zip", {"FVC.csv": labelled_metadata(VIDEOS, ["fake", "fake"])})
        (rerun,) = scan_inbox(defs, instance)
        assert rerun.partition_key == VIDEOS[0] and rerun.run_key.startswith("relabel:")
        advanced = instance.get_instigator_state(*ids).instigator_data.cursor
        assert ScanState.from_cursor(advanced).relabels == stored.relabels + 1
