import os
import shutil
from pathlib import Path

import pytest

from conftest import fvc_metadata, write_zip
from fvc_dagster.lib.ingest import archives
from fvc_dagster.lib.ingest.inbox import ScanState, contiguous_batches, plan_scan

IDS = [f"video{n:06d}" for n in range(6)]  # 11 characters, like YouTube ids


@pytest.fixture
def inbox(tmp_path: Path, video_bytes) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = video_bytes(frames=4)
    write_zip(inbox / "FVC1.zip", {f"{v}.mp4": data for v in IDS[:3]})
    write_zip(inbox / "FVC2.zip", {f"{v}.mp4": data for v in IDS[3:5]})
    write_zip(inbox / "Metadata.zip", {"FVC.csv": fvc_metadata([("c0", v, "fake") for v in IDS])})
    return inbox


def scan_and_register(inbox: Path, state: ScanState, registered: list[str], **kwargs):
    plan = plan_scan(inbox, state, registered, **kwargs)
    return plan, plan.state, registered + plan.new_videos


def test_first_scan_registers_every_video_in_archive_order(inbox):
    plan = plan_scan(inbox, ScanState(), [])
    assert plan.new_videos == IDS[:5]
    assert sorted(plan.read) == ["FVC1.zip", "FVC2.zip", "Metadata.zip"]


def test_the_same_inbox_again_adds_nothing_and_reads_nothing(inbox):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    state = ScanState.from_cursor(state.to_cursor())  # the cursor round-trips
    plan = plan_scan(inbox, state, registered)
    assert (plan.new_videos, plan.relabelled, plan.read) == ([], [], [])


def test_a_copy_under_another_name_adds_nothing(inbox):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    shutil.copy(inbox / "FVC1.zip", inbox / "FVC1 (copy).zip")
    plan = plan_scan(inbox, state, registered)
    assert plan.new_videos == [] and plan.copies == ["FVC1 (copy).zip"] and plan.read == []


def test_a_grown_archive_adds_only_its_new_videos(inbox, video_bytes):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    data = video_bytes(frames=4)
    write_zip(inbox / "FVC2.zip", {f"{v}.mp4": data for v in IDS[3:6]})
    os.utime(inbox / "FVC2.zip", ns=(1, 1))  # a new mtime, as a real rewrite would have
    plan = plan_scan(inbox, state, registered)
    assert plan.new_videos == [IDS[5]] and plan.relabelled == []


def test_wrong_password_archive_is_retried_while_the_rest_registers(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_zip(inbox / "A.zip", {"aaaaaaaaaaa.mp4": video_bytes()}, password="pw1")
    write_zip(inbox / "B.zip", {"bbbbbbbbbbb.mp4": video_bytes()}, password="pw2")
    plan = plan_scan(inbox, ScanState(), [], password="pw2")
    assert plan.new_videos == ["bbbbbbbbbbb"]
    assert [e.archive for e in plan.errors] == ["A.zip"] and "wrong password" in str(plan.errors[0])
    assert "A.zip" not in plan.state.archives  # so a later scan tries it again
    retry = plan_scan(inbox, plan.state, plan.new_videos, password="pw1")
    assert retry.new_videos == ["aaaaaaaaaaa"]


def test_metadata_that_arrives_later_relabels_only_the_changed_videos(inbox):
    metadata = inbox / "Metadata.zip"
    hidden = metadata.rename(inbox.parent / "Metadata.zip")
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    rows = [("c0", v, "fake") for v in IDS[:2]]
    write_zip(hidden, {"FVC.csv": fvc_metadata(rows)})
    shutil.move(hidden, metadata)
    plan = plan_scan(inbox, state, registered)
    assert plan.new_videos == [] and plan.relabelled == IDS[:2]


def rewrite(archive: Path, members: dict[str, bytes], mtime_ns: int) -> None:
    write_zip(archive, members)
    os.utime(archive, ns=(mtime_ns, mtime_ns))  # a new mtime, as a real rewrite would have


def test_a_label_flipping_back_is_a_new_relabelling_each_time(inbox):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    changes = []
    for n, label in enumerate(["real", "fake", "real"], start=1):
        rewrite(inbox / "Metadata.zip", {"FVC.csv": fvc_metadata([("c0", IDS[0], label)])}, n)
        plan = plan_scan(inbox, state, registered)
        assert plan.relabelled == [IDS[0]]
        state = ScanState.from_cursor(plan.state.to_cursor())
        changes.append((state.relabels, state.metadata[IDS[0]]))
    assert [count for count, _ in changes] == [1, 2, 3]  # counted per change
    assert changes[0][1] == changes[2][1]  # the same metadata hash came back


def test_a_video_moving_to_the_test_split_is_re_run(inbox):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    rows = [("c0", v, "fake") for v in IDS]
    splits = ["test" if v == IDS[1] else "train" for v in IDS]
    rewrite(inbox / "Metadata.zip", {"FVC.csv": fvc_metadata(rows, splits)}, 1)
    plan = plan_scan(inbox, state, registered)
    # a declared train is no change for a video that was train by default
    assert plan.relabelled == [IDS[1]]


def test_changed_test_archive_patterns_re_run_the_videos_of_archives_they_move(inbox):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    plan = plan_scan(inbox, state, registered, test_archives=["FVC2*.zip", "Nothing*.zip"])
    assert plan.relabelled == IDS[3:5] and plan.read == []
    state = ScanState.from_cursor(plan.state.to_cursor())
    assert plan_scan(inbox, state, registered, test_archives=["FVC2.zip"]).relabelled == []
    assert plan_scan(inbox, state, registered).relabelled == IDS[3:5]


def test_a_registered_video_keeps_its_source_copies_pass_and_other_bytes_are_named(
    inbox, video_bytes
):
    _, state, registered = scan_and_register(inbox, ScanState(), [])
    same = (inbox / "FVC1.zip").read_bytes()
    write_zip(inbox / "A0.zip", {f"{IDS[0]}.mp4": video_bytes(frames=4)})  # the same file
    write_zip(inbox / "A1.zip", {f"{IDS[1]}.mp4": video_bytes(frames=5)})  # other bytes
    plan = plan_scan(inbox, state, registered)
    assert plan.new_videos == [] and (inbox / "FVC1.zip").read_bytes() == same
    assert plan.duplicates == [
        f"video '{IDS[0]}' in archive 'A0.zip': a copy of its source 'FVC1.zip' member "
        f"'{IDS[0]}.mp4'"
    ]
    (conflict,) = plan.conflicts
    assert conflict.archive == "A1.zip" and "registered from 'FVC1.zip'" in str(conflict)
    assert plan.state.sources[IDS[1]][0] == "FVC1.zip"  # it keeps its source


def test_a_new_id_with_two_different_files_registers_neither_until_one_goes(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_zip(inbox / "A.zip", {"vid00000001.mp4": video_bytes(frames=4)})
    write_zip(inbox / "B.zip", {"vid00000001.mp4": video_bytes(frames=5)})
    plan = plan_scan(inbox, ScanState(), [])
    assert plan.new_videos == [] and "A.zip" in str(plan.conflicts[0])
    assert "B.zip" in str(plan.conflicts[0])
    (inbox / "B.zip").unlink()
    retry = plan_scan(inbox, plan.state, [])  # A.zip is read again, as it was not recorded
    assert retry.new_videos == ["vid00000001"] and retry.conflicts == []


def test_unsafe_members_are_reported_and_not_registered(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_zip(inbox / "A.zip", {"../escape.mp4": b"x", "good.mp4": video_bytes()})
    plan = plan_scan(inbox, ScanState(), [])
    assert plan.new_videos == ["good"] and "escape.mp4" in str(plan.refused[0])


def test_contiguous_batches_cover_the_selection_in_order():
    keys = list("abcdefghij")
    assert contiguous_batches(keys, "abcdefg", 3) == [("a", "c"), ("d", "f"), ("g", "g")]
    assert contiguous_batches(keys, "abdefj", 10) == [("a", "b"), ("d", "f"), ("j", "j")]
    assert contiguous_batches(keys, [], 4) == []


def test_a_relabel_inside_an_encrypted_metadata_archive_is_seen(tmp_path, video_bytes):
    """AE-2 stores CRC 0: real and fake, of one size, differ only in the decrypted bytes."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_zip(inbox / "FVC1.zip", {f"{IDS[0]}.mp4": video_bytes(frames=4)}, password="pw")
    metadata = inbox / "Metadata.zip"
    write_zip(metadata, {"FVC.csv": fvc_metadata([("c0", IDS[0], "real")])}, password="pw")
    _, state, registered = scan_and_register(inbox, ScanState(), [], password="pw")
    write_zip(metadata, {"FVC.csv": fvc_metadata([("c0", IDS[0], "fake")])}, password="pw")
    os.utime(metadata, ns=(1, 1))
    plan = plan_scan(inbox, state, registered, password="pw")
    assert (plan.read, plan.copies, plan.relabelled) == (["Metadata.zip"], [], [IDS[0]])


def same_size_other_bytes(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_same_size_encrypted_videos_are_copies_only_when_their_bytes_are(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = video_bytes(frames=4)
    other = same_size_other_bytes(data)
    write_zip(inbox / "FVC1.zip", {f"{v}.mp4": data for v in IDS[:2]}, password="pw")
    _, state, registered = scan_and_register(inbox, ScanState(), [], password="pw")
    members = {f"{IDS[0]}.mp4": data, f"{IDS[1]}.mp4": other, f"{IDS[2]}.mp4": other}
    write_zip(inbox / "A.zip", members, password="pw")  # encrypted again: salts of its own
    write_zip(inbox / "B.zip", {f"{IDS[2]}.mp4": data}, password="pw")
    plan = plan_scan(inbox, state, registered, password="pw")
    assert plan.duplicates == [
        f"video '{IDS[0]}' in archive 'A.zip': a copy of its source 'FVC1.zip' member "
        f"'{IDS[0]}.mp4'"
    ]
    registered_conflict, new_conflict = plan.conflicts
    assert str(registered_conflict) == (
        f"archive 'A.zip', member '{IDS[1]}.mp4': video '{IDS[1]}' is registered from "
        f"'FVC1.zip' member '{IDS[1]}.mp4', and this file under the same id differs; it is "
        "ignored (remove or rename it)"
    )
    assert f"video '{IDS[2]}' has different content in 'A.zip'" in str(new_conflict)
    assert "'B.zip'" in str(new_conflict) and plan.new_videos == []


def test_only_members_that_sizes_and_crcs_cannot_tell_apart_are_read(
    inbox, video_bytes, monkeypatch
):
    """A scan reads no video while no id is in two places; a copy made by copying the file
    (plain or encrypted) is known from its listing; a video in two archives is read to compare."""
    reads = []
    read = archives.member_sha256

    def recorded(path, member, *args):
        reads.append((path.name, member))
        return read(path, member, *args)

    monkeypatch.setattr(archives, "member_sha256", recorded)
    write_zip(inbox / "E.zip", {f"{IDS[5]}.mp4": video_bytes(frames=6)}, password="pw")
    _, state, registered = scan_and_register(inbox, ScanState(), [], password="pw")
    shutil.copy(inbox / "FVC1.zip", inbox / "FVC1 (copy).zip")
    shutil.copy(inbox / "E.zip", inbox / "E (copy).zip")
    plan, state, registered = scan_and_register(inbox, state, registered, password="pw")
    assert sorted(plan.copies) == ["E (copy).zip", "FVC1 (copy).zip"] and reads == []
    write_zip(inbox / "P.zip", {f"{IDS[0]}.mp4": video_bytes(frames=4)})  # the same bytes
    plan = plan_scan(inbox, state, registered, password="pw")
    assert len(plan.duplicates) == 1 and plan.conflicts == []
    assert sorted(reads) == [("FVC1.zip", f"{IDS[0]}.mp4"), ("P.zip", f"{IDS[0]}.mp4")]
