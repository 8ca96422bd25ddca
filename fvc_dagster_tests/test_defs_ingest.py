"""The archive sensor and per-video assets through Dagster, with a real instance."""

import os
import warnings
import zipfile
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import break_deflate_stream, corrupt_encrypted_zip, fvc_metadata, write_zip
from fvc_dagster.definitions import build_defs
from fvc_dagster.defs.ingest.sensors import archive_sensor, split_failed_video_batches
from fvc_dagster.defs.partitions import VIDEO_BATCH_SIZE, partition_range_tags
from fvc_dagster.defs.resources import FvcStorage, VideoInbox, inbox_limits_from
from fvc_dagster.lib.clips.store import CLIP_SUFFIX
from fvc_dagster.lib.ingest.archives import ArchiveLimits
from fvc_dagster.local.demo import execute_run_request

GOOD = [f"goodvid{n:04d}" for n in range(5)]  # 11-character ids, as in the FVC metadata


@pytest.fixture
def platform(tmp_path: Path):
    """Definitions over a fresh data root, and a real (temporary) Dagster instance."""
    (tmp_path / "inbox").mkdir()
    with dg.instance_for_test() as instance:
        yield build_defs(tmp_path), instance, tmp_path


def evaluate_archive_sensor(defs: dg.Definitions, instance, cursor: str | None = None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources)
    ) as context:
        result = archive_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def warehouse_rows(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_sensor_registers_new_videos_and_requests_batches_not_runs_per_video(platform, video_bytes):
    defs, instance, root = platform
    many = [f"v{n:010d}" for n in range(VIDEO_BATCH_SIZE + 3)]
    write_zip(root / "inbox" / "FVC1.zip", {f"{v}.mp4": b"x" for v in many})
    result = evaluate_archive_sensor(defs, instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == many
    ranges = [r.partition_key_range for r in result.run_requests]
    assert [(r.start, r.end) for r in ranges] == [
        (many[0], many[VIDEO_BATCH_SIZE - 1]),
        (many[VIDEO_BATCH_SIZE], many[-1]),
    ]
    again = evaluate_archive_sensor(defs, instance, result.cursor)
    assert not again.run_requests and "No new videos" in again.skip_reason.skip_message


def test_batch_ingests_probes_and_featurises_every_video(platform, video_bytes):
    defs, instance, root = platform
    write_zip(
        root / "inbox" / "FVC1.zip",
        {f"{v}.mp4": video_bytes(frames=10, seed=i) for i, v in enumerate(GOOD)},
    )
    rows = [("c1", GOOD[0], "fake"), ("c1", GOOD[1], "real"), ("c2", GOOD[2], "uncertain")]
    write_zip(root / "inbox" / "Metadata.zip", {"FVC.csv": fvc_metadata(rows)})
    (request,) = evaluate_archive_sensor(defs, instance).run_requests
    assert execute_run_request(defs, "video_pipeline", request, instance).success
    table = warehouse_rows(
        root, "select video_id, label, raw_label, dup_group, width, height, frame_count, codec "
        "from fvc.source_videos order by video_id"
    )  # fmt: skip
    assert table[0] == (GOOD[0], "fake", "fake", "c1", 64, 48, 10, "h264")
    assert table[2][1:4] == (None, "uncertain", "c2")  # other labels are kept raw, not trained
    assert table[3][1:4] == (None, None, GOOD[3])  # no metadata row: no label, its own group
    assert (root / "videos" / f"{GOOD[0]}.mp4").exists()
    for table in ("augmented_clips", "handcrafted_features", "scaled_clips", "scaled_features"):
        counts = warehouse_rows(root, f"select count(*), count(distinct video_id) from fvc.{table}")
        assert counts == [(5 * 11, 5)], table

    # Each video's partition carries its own figures: its seconds, its clips and its preview.
    materialized = instance.fetch_materializations(dg.AssetKey("augmented_clips"), limit=10).records
    by_video = {r.partition_key: r.asset_materialization.metadata for r in materialized}
    assert sorted(by_video) == sorted(GOOD)
    for video_id, metadata in by_video.items():
        assert metadata["clips"].value == 11, video_id
        assert metadata["preview"].value.startswith(f"![{video_id}](data:image/png;base64,")
        assert 0 < metadata["seconds"].value <= metadata["slowest_video_seconds"].value
        assert metadata["videos"].value == 5
    assert len({m["seconds"].value for m in by_video.values()}) > 1
    labels = instance.fetch_materializations(dg.AssetKey("source_videos"), limit=10).records
    assert {r.partition_key: r.asset_materialization.metadata["label"].value for r in labels} == {
        GOOD[0]: "fake", GOOD[1]: "real", GOOD[2]: None, GOOD[3]: None, GOOD[4]: None
    }  # fmt: skip


def test_bad_videos_fail_their_own_partition_and_the_rest_of_the_batch_succeeds(
    platform, video_bytes
):
    defs, instance, root = platform
    members = {f"{v}.mp4": video_bytes(frames=8, seed=i) for i, v in enumerate(GOOD)}
    members["corruptvid1.mp4"] = b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200
    members["emptyvideo1.mp4"] = b""
    write_zip(root / "inbox" / "FVC1.zip", members)
    (batch,) = evaluate_archive_sensor(defs, instance).run_requests
    first = execute_run_request(defs, "video_pipeline", batch, instance)
    assert not first.success
    failure = first.failure_data_for_node("source_videos").user_failure_data
    assert set(failure.metadata["failed_videos"].value) == {"corruptvid1", "emptyvideo1"}
    assert "corruptvid1" in failure.description and "FVC1.zip" in failure.description

    failure_event = first.get_run_failure_event()
    context = dg.build_run_status_sensor_context(
        sensor_name="split_failed_video_batches",
        dagster_instance=instance,
        dagster_run=first.dagster_run,
        dagster_event=failure_event,
    ).for_run_failure()
    requests = split_failed_video_batches(context)
    isolated = sorted(r.partition_key for r in requests if r.partition_key)
    assert isolated == ["corruptvid1", "emptyvideo1"]
    outcomes = {
        r.partition_key or r.partition_key_range.start: execute_run_request(
            defs, "video_pipeline", r, instance
        ).success
        for r in requests
    }
    assert outcomes.pop("corruptvid1") is False and outcomes.pop("emptyvideo1") is False
    assert all(outcomes.values())
    done = instance.get_materialized_partitions(dg.AssetKey("handcrafted_features"))
    assert done == set(GOOD)
    assert (root / "quarantine" / "corruptvid1.mp4").exists()  # kept, not lost
    assert not (root / "videos" / "corruptvid1.mp4").exists()


def test_wrong_password_fails_that_archive_and_the_others_register(
    platform, video_bytes, monkeypatch
):
    _, instance, root = platform
    monkeypatch.setenv("TEST_ZIP_PASSWORD", "right")
    defs = build_defs(root, password_env="TEST_ZIP_PASSWORD")
    write_zip(root / "inbox" / "A.zip", {"aaaaaaaaaaa.mp4": video_bytes()}, password="wrong")
    write_zip(root / "inbox" / "B.zip", {"bbbbbbbbbbb.mp4": video_bytes()}, password="right")
    result = evaluate_archive_sensor(defs, instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["bbbbbbbbbbb"]
    assert execute_run_request(defs, "video_pipeline", result.run_requests[0], instance).success
    assert warehouse_rows(root, "select video_id from fvc.source_videos") == [("bbbbbbbbbbb",)]


def test_a_corrupt_encrypted_archive_fails_alone_and_the_others_register_and_ingest(
    platform, video_bytes, monkeypatch, capfd
):
    _, instance, root = platform
    monkeypatch.setenv("TEST_ZIP_PASSWORD", "right")
    defs = build_defs(root, password_env="TEST_ZIP_PASSWORD")
    corrupt_encrypted_zip(root / "inbox" / "A.zip", {"aaaaaaaaaaa.mp4": video_bytes()}, "right")
    write_zip(root / "inbox" / "B.zip", {"bbbbbbbbbbb.mp4": video_bytes()}, password="right")
    result = evaluate_archive_sensor(defs, instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["bbbbbbbbbbb"]
    logged = capfd.readouterr().err  # the sensor's log, on the console
    assert "archive 'A.zip', member 'aaaaaaaaaaa.mp4': corrupt member data" in logged
    assert execute_run_request(defs, "video_pipeline", result.run_requests[0], instance).success
    assert warehouse_rows(root, "select video_id from fvc.source_videos") == [("bbbbbbbbbbb",)]
    again = evaluate_archive_sensor(defs, instance, result.cursor)  # later ticks do not raise
    assert not again.run_requests


def test_rematerializing_a_partition_reproduces_rows_and_clip_files(platform, video_bytes):
    defs, instance, root = platform
    write_zip(root / "inbox" / "FVC1.zip", {f"{GOOD[0]}.mp4": video_bytes()})
    (request,) = evaluate_archive_sensor(defs, instance).run_requests
    queries = [
        "select * from fvc.source_videos",
        "select * from fvc.augmented_clips order by clip_id",
        "select * from fvc.handcrafted_features order by clip_id",
        "select * from fvc.scaled_clips order by clip_id",
        "select * from fvc.scaled_features order by clip_id",
    ]
    assert execute_run_request(defs, "video_pipeline", request, instance).success
    first = [warehouse_rows(root, q) for q in queries]

    def clip_files() -> dict:
        return {p: p.read_bytes() for p in sorted((root / "clips").rglob(f"*{CLIP_SUFFIX}"))}

    clip_bytes = clip_files()
    assert execute_run_request(defs, "video_pipeline", request, instance).success
    assert [warehouse_rows(root, q) for q in queries] == first
    assert len(first[1]) == 11 and len(clip_bytes) == 11
    assert {
        p: p.read_bytes() for p in sorted((root / "clips").rglob(f"*{CLIP_SUFFIX}"))
    } == clip_bytes


def test_rerunning_a_partition_keeps_its_source_when_another_archive_brings_other_bytes(
    platform, video_bytes
):
    defs, instance, root = platform
    write_zip(root / "inbox" / "FVC1.zip", {f"{GOOD[0]}.mp4": video_bytes(seed=1)})
    (request,) = evaluate_archive_sensor(defs, instance).run_requests
    assert execute_run_request(defs, "video_pipeline", request, instance).success
    before = warehouse_rows(root, "select archive, member, sha256 from fvc.source_videos")
    write_zip(root / "inbox" / "A.zip", {f"{GOOD[0]}.mp4": video_bytes(seed=2)})  # sorts first
    assert execute_run_request(defs, "video_pipeline", request, instance).success
    assert warehouse_rows(root, "select archive, member, sha256 from fvc.source_videos") == before
    assert before[0][0] == "FVC1.zip"


def test_relabel_runs_have_a_new_run_key_for_every_change(platform, video_bytes):
    defs, instance, root = platform
    write_zip(root / "inbox" / "FVC1.zip", {f"{GOOD[0]}.mp4": video_bytes()})
    cursor = evaluate_archive_sensor(defs, instance).cursor
    keys = []
    for n, label in enumerate(["real", "fake", "real"], start=1):
        metadata = root / "inbox" / "Metadata.zip"
        write_zip(metadata, {"FVC.csv": fvc_metadata([("c", GOOD[0], label)])})
        os.utime(metadata, ns=(n, n))
        result = evaluate_archive_sensor(defs, instance, cursor)
        (request,) = result.run_requests
        keys.append(request.run_key)
        cursor = result.cursor
    assert len(set(keys)) == 3  # "real" again is a change of its own, never de-duplicated


def test_any_error_from_one_videos_bytes_fails_that_video_alone(platform, video_bytes):
    """A corrupt deflate stream in the archive, a clip file PyAV cannot read, and a clip file
    deleted under the store: each is its own video's named failure; the others succeed."""
    defs, instance, root = platform
    archive = root / "inbox" / "FVC1.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, video_id in enumerate(GOOD[:4]):
            zf.writestr(f"{video_id}.mp4", video_bytes(frames=8, seed=i))
    break_deflate_stream(archive, f"{GOOD[3]}.mp4")
    (batch,) = evaluate_archive_sensor(defs, instance).run_requests
    run = execute_run_request(defs, "video_pipeline", batch, instance)
    failure = run.failure_data_for_node("source_videos").user_failure_data
    assert failure.metadata["failed_videos"].value == [GOOD[3]]
    assert f"FVC1.zip', member '{GOOD[3]}.mp4': corrupt member data" in failure.description

    good = GOOD[:3]
    tags = partition_range_tags(good[0], good[-1])
    assert execute_run_request(defs, "video_pipeline", dg.RunRequest(tags=tags), instance).success
    deleted = root / "clips" / good[0] / f"{good[0]}__aug03{CLIP_SUFFIX}"
    deleted.unlink()
    garbled = root / "clips" / good[1] / f"{good[1]}__orig{CLIP_SUFFIX}"
    garbled.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    features = defs.resolve_job_def("video_pipeline").execute_in_process(
        instance=instance,
        tags=tags,
        asset_selection=[dg.AssetKey("handcrafted_features")],
        raise_on_error=False,
    )
    failure = features.failure_data_for_node("handcrafted_features").user_failure_data
    assert failure.metadata["failed_videos"].value == good[:2]
    assert f"clip {deleted}: unreadable" in failure.description
    assert f"clip {garbled}: unreadable" in failure.description


def test_a_member_name_listed_twice_with_different_content_is_logged_and_the_rest_register(
    platform, video_bytes, capsys
):
    defs, instance, root = platform
    with warnings.catch_warnings(), zipfile.ZipFile(root / "inbox" / "FVC1.zip", "w") as zf:
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        for name, seed in ((GOOD[0], 0), (GOOD[1], 1), (GOOD[0], 2), (GOOD[2], 3)):
            zf.writestr(f"{name}.mp4", video_bytes(seed=seed))
    result = evaluate_archive_sensor(defs, instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == GOOD[1:3]
    (error,) = [line for line in capsys.readouterr().err.splitlines() if " - ERROR - " in line]
    member = f"ERROR - archive 'FVC1.zip', member '{GOOD[0]}.mp4': name listed 2 times with "
    assert member + "different content (" in error  # the sensor's log, sizes and CRCs follow
    assert error.endswith("; no copy is used in place of another: rename or remove all but one")


SOURCE_VIDEOS = [dg.AssetKey("source_videos")]


def encrypted_platform(platform, monkeypatch):
    """The platform's instance and data root, with definitions reading archives encrypted with
    the password "right"."""
    _, instance, root = platform
    monkeypatch.setenv("TEST_ZIP_PASSWORD", "right")
    return build_defs(root, password_env="TEST_ZIP_PASSWORD"), instance, root


def test_a_relabel_inside_an_encrypted_metadata_archive_re_runs_its_video(
    platform, video_bytes, monkeypatch
):
    """AE-2 archives store CRC 0: real and fake (one size) differ only in the decrypted CSV."""
    defs, instance, root = encrypted_platform(platform, monkeypatch)
    write_zip(root / "inbox" / "FVC1.zip", {f"{GOOD[0]}.mp4": video_bytes()}, password="right")
    metadata = root / "inbox" / "Metadata.zip"
    write_zip(metadata, {"FVC.csv": fvc_metadata([("c", GOOD[0], "real")])}, password="right")
    cursor = evaluate_archive_sensor(defs, instance).cursor
    write_zip(metadata, {"FVC.csv": fvc_metadata([("c", GOOD[0], "fake")])}, password="right")
    os.utime(metadata, ns=(1, 1))
    (relabel,) = evaluate_archive_sensor(defs, instance, cursor).run_requests
    assert relabel.run_key.startswith("relabel:1-") and relabel.partition_key == GOOD[0]
    assert execute_run_request(defs, "video_pipeline", relabel, instance, SOURCE_VIDEOS).success
    assert warehouse_rows(root, "select label from fvc.source_videos") == [("fake",)]


def test_a_same_size_encrypted_file_under_a_registered_id_is_never_ingested_in_its_place(
    platform, video_bytes, monkeypatch, capfd
):
    defs, instance, root = encrypted_platform(platform, monkeypatch)
    data = video_bytes()
    other = data[:-1] + bytes([data[-1] ^ 1])  # the same size, other bytes
    members = {f"{GOOD[0]}.mp4": data, f"{GOOD[1]}.mp4": data}
    write_zip(root / "inbox" / "B.zip", members, password="right")
    registered = evaluate_archive_sensor(defs, instance)
    write_zip(root / "inbox" / "A.zip", {f"{GOOD[0]}.mp4": other}, password="right")  # first
    assert not evaluate_archive_sensor(defs, instance, registered.cursor).run_requests
    source, intruder = f"'B.zip' member '{GOOD[0]}.mp4'", f"'A.zip' member '{GOOD[0]}.mp4'"
    assert (
        f"ERROR - archive 'A.zip', member '{GOOD[0]}.mp4': video '{GOOD[0]}' is registered from "
        f"{source}, and this file under the same id differs" in capfd.readouterr().err
    )
    (batch,) = registered.run_requests
    run = execute_run_request(defs, "video_pipeline", batch, instance, SOURCE_VIDEOS)
    failure = run.failure_data_for_node("source_videos").user_failure_data
    assert failure.metadata["failed_videos"].value == [GOOD[0]]
    assert f"video '{GOOD[0]}' has different content in {intruder}, {source}" in (
        failure.description
    )
    assert not (root / "videos" / f"{GOOD[0]}.mp4").exists()  # neither file is taken


def test_the_inbox_limits_default_to_the_librarys(tmp_path):
    inbox = VideoInbox(storage=FvcStorage(data_dir=str(tmp_path)))
    assert inbox.limits == ArchiveLimits()


def test_archive_limits_set_in_the_environment_refuse_archives_and_metadata_by_name(
    platform, video_bytes, monkeypatch, capfd
):
    _, instance, root = platform
    monkeypatch.setenv("FVC_MAX_MEMBERS", "4")
    monkeypatch.setenv("FVC_MAX_METADATA_MB", "1")
    defs = build_defs(root, inbox_limits=inbox_limits_from(os.environ))
    inbox = root / "inbox"
    write_zip(inbox / "Many.zip", {f"many{n:07d}.mp4": b"x" for n in range(5)})
    with zipfile.ZipFile(inbox / "Small.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(2):  # each at the 1 MiB floor of the per-member ratio check
            zf.writestr(f"bomb{n:07d}.mp4", b"\0" * 1024**2)
    table = fvc_metadata([("c", f"v{n:010d}", "fake") for n in range(25_000)])  # over 1 MiB
    write_zip(inbox / "FVC1.zip", {f"{GOOD[0]}.mp4": video_bytes(), "FVC.csv": table})
    result = evaluate_archive_sensor(defs, instance)
    assert list(result.dynamic_partitions_requests[0].partition_keys) == [GOOD[0]]
    logged = capfd.readouterr().err
    assert "ERROR - archive 'Many.zip': 5 members exceed the limit of 4 members per archive\n" in (
        logged
    )
    assert "ERROR - archive 'Small.zip': 2 small members inflate to 2097152 B, " in logged
    assert (
        f"ERROR - archive 'FVC1.zip', member 'FVC.csv': metadata CSV of {len(table)} B exceeds "
        "the limit of 1048576 B; its labels are not read\n" in logged
    )


def test_quarantine_keeps_failed_videos_up_to_its_limit(platform, video_bytes, monkeypatch):
    _, instance, root = platform
    monkeypatch.setenv("FVC_MAX_QUARANTINE_MB", "1")
    defs = build_defs(root, inbox_limits=inbox_limits_from(os.environ))
    garbage = b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 90_000  # 630 kB, no video in it
    members = {"corruptvid1.mp4": garbage, "corruptvid2.mp4": garbage, "goodvid.mp4": video_bytes()}
    write_zip(root / "inbox" / "FVC1.zip", members)
    (batch,) = evaluate_archive_sensor(defs, instance).run_requests
    run = execute_run_request(defs, "video_pipeline", batch, instance, SOURCE_VIDEOS)
    failure = run.failure_data_for_node("source_videos").user_failure_data
    assert failure.metadata["failed_videos"].value == ["corruptvid1", "corruptvid2"]
    quarantine = root / "quarantine"
    assert f"member 'corruptvid1.mp4'; moved to {quarantine / 'corruptvid1.mp4'}]" in (
        failure.description
    )
    assert (
        f"member 'corruptvid2.mp4'; not kept: quarantine/ holds {len(garbage)} B, and this file "
        "would pass its limit of 1048576 B]" in failure.description
    )
    assert [p.name for p in quarantine.iterdir()] == ["corruptvid1.mp4"]
