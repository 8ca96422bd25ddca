"""Concurrent runs on one warehouse: four `dagster job execute` processes, each a batch of
videos, compute side by side and queue only for the short warehouse reads and writes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from conftest import REPO, write_zip
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.ingest.sensors import archive_sensor
from fvc_dagster.defs.partitions import partition_range_tags

VIDEOS = [f"concvid{n:04d}" for n in range(8)]
PER_VIDEO_TABLES = ("source_videos", "augmented_clips", "handcrafted_features", "scaled_features")


def test_four_concurrent_batches_overlap_and_none_fails_on_the_warehouse_lock(
    tmp_path: Path, video_bytes, monkeypatch
):
    (tmp_path / "inbox").mkdir()
    members = {f"{v}.mp4": video_bytes(frames=8, seed=i) for i, v in enumerate(VIDEOS)}
    write_zip(tmp_path / "inbox" / "FVC1.zip", members)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "FVC_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(home)}
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    defs = build_defs(tmp_path)
    with dg.DagsterInstance.get() as instance:
        with dg.build_sensor_context(
            instance=instance, definitions=defs, resources=dict(defs.resources)
        ) as context:
            (request,) = archive_sensor(context).dynamic_partitions_requests
        instance.add_dynamic_partitions(request.partitions_def_name, VIDEOS)

        batches = [VIDEOS[i : i + 2] for i in range(0, len(VIDEOS), 2)]
        command = [sys.executable, "-m", "dagster", "job", "execute"]
        command += ["-m", "fvc_dagster.definitions", "-j", "video_pipeline"]
        processes = [
            subprocess.Popen(
                [*command, "--tags", json.dumps(partition_range_tags(batch[0], batch[-1]))],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for batch in batches
        ]
        outputs = [p.communicate(timeout=600)[0] for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, "\n".join(outputs)

        records = instance.get_run_records(dg.RunsFilter(job_name="video_pipeline"))
        assert len(records) == 4
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
        spans = sorted((r.start_time, r.end_time) for r in records)  # (start, end) by start
        overlapping = sum(
            after[0] < before[1] for before, after in zip(spans, spans[1:], strict=False)
        )
        assert overlapping >= 1, f"the runs never overlapped: {spans}"

        waits = {  # one write per run and table (its partitions share the metadata)
            (record.run_id, table): record.asset_materialization.metadata["warehouse_wait_s"].value
            for table in PER_VIDEO_TABLES
            for record in instance.fetch_materializations(dg.AssetKey(table), limit=100).records
        }
        assert len(waits) == 4 * len(PER_VIDEO_TABLES)
        waits = list(waits.values())
        logs = "\n".join(outputs)
        assert "IOException" not in logs and "Could not set lock" not in logs
        print(
            f"4 concurrent runs, {len(waits)} warehouse writes: {sum(w > 0 for w in waits)} "
            f"waited, {sum(waits):.2f} s in all; runs overlapping their successor: {overlapping}"
        )

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for table in PER_VIDEO_TABLES:
            stored = {
                v for (v,) in con.execute(f"select distinct video_id from fvc.{table}").fetchall()
            }
            assert stored == set(VIDEOS), table
