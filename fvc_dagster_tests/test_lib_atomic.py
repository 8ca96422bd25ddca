"""Atomic writes: the target changes only when a write completes; a killed writer's temporary
is removed by the next write of the same target."""

from pathlib import Path

import pytest

from fvc_dagster.lib.atomic import replacing, temporaries_of


def test_a_failed_write_leaves_the_old_content_and_no_temporary(tmp_path: Path):
    target = tmp_path / "clip.avi"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and temporaries_of(target) == []


def test_the_next_write_removes_a_killed_writer_s_temporary_and_no_other_file(tmp_path: Path):
    target, other = tmp_path / "clip.avi", tmp_path / "other.avi"
    leftover = tmp_path / ".clip.avi.k1ll3d.partial"  # named as `replacing` names them
    leftover.write_bytes(b"half")
    assert temporaries_of(target) == [leftover] and temporaries_of(other) == []
    with replacing(other) as tmp:
        tmp.write_bytes(b"other")
    assert leftover.exists()
    with replacing(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and temporaries_of(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "other.avi"]
