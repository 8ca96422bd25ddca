import time

import numpy as np
import pytest

from fvc_dagster.lib.clips.store import contact_sheet, png_markdown, read_clip, write_clip
from fvc_dagster.lib.ingest.video import VideoError


def random_clip(k=4, h=30, w=42, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (k, h, w, 3), dtype=np.uint8)


def test_clips_round_trip_losslessly(tmp_path):
    clip = random_clip()
    write_clip(clip, tmp_path / "c.avi")
    np.testing.assert_array_equal(read_clip(tmp_path / "c.avi"), clip)


def test_a_cropped_view_is_written_as_its_pixels(tmp_path):
    canvas = random_clip(h=40, w=50)
    view = canvas[:, 5:35, 3:45]  # not contiguous
    write_clip(view, tmp_path / "c.avi")
    np.testing.assert_array_equal(read_clip(tmp_path / "c.avi"), view)


def test_a_truncated_clip_is_an_error_naming_it(tmp_path):
    write_clip(random_clip(), tmp_path / "c.avi")
    data = (tmp_path / "c.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(VideoError, match=r"cut\.avi: 2 frames, its header says 4"):
        read_clip(tmp_path / "cut.avi")


def test_a_missing_or_unreadable_clip_file_is_a_video_error_naming_it(tmp_path):
    with pytest.raises(VideoError, match=r"gone\.avi: unreadable \(FileNotFoundError"):
        read_clip(tmp_path / "gone.avi")
    (tmp_path / "junk.avi").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(VideoError, match=r"junk\.avi: unreadable"):
        read_clip(tmp_path / "junk.avi")


def test_the_same_clip_gives_the_same_bytes_later(tmp_path):
    clip = random_clip()
    first = write_clip(clip, tmp_path / "a.avi")
    time.sleep(1.1)  # a muxer that wrote the date would differ now
    assert write_clip(clip, tmp_path / "b.avi") == first
    assert (tmp_path / "a.avi").read_bytes() == (tmp_path / "b.avi").read_bytes()


def test_write_leaves_no_temporary_file(tmp_path):
    write_clip(random_clip(), tmp_path / "clips" / "c.avi")
    assert [p.name for p in (tmp_path / "clips").iterdir()] == ["c.avi"]


def test_non_clip_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_clip(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "c.avi")


def test_preview_is_a_row_of_thumbnails_as_png_markdown():
    sheet = contact_sheet([random_clip()[0], random_clip(h=60, w=20)[0]], height=24)
    assert sheet.shape == (24, round(42 * 24 / 30) + round(20 * 24 / 60), 3)
    assert png_markdown(sheet, "clips").startswith("![clips](data:image/png;base64,iVBOR")
