from pathlib import Path

import av
import numpy as np
import pytest

from conftest import write_video
from fvc_dagster.lib.ingest.video import VideoError, probe_video, sample_frames, uniform_indices


def test_uniform_indices_span_first_to_last_frame():
    assert uniform_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert uniform_indices(3, 5).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("gop", [1, 5, 250])
def test_sampled_frames_equal_a_full_decode_at_uniform_indices(tmp_path: Path, gop: int):
    path = write_video(tmp_path / "v.mp4", frames=30, gop=gop)
    with av.open(str(path)) as container:
        every_frame = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    clip = sample_frames(path, 6)
    assert clip.shape == (6, 48, 64, 3) and clip.dtype == np.uint8
    for image, index in zip(clip, uniform_indices(30, 6), strict=True):
        np.testing.assert_array_equal(image, every_frame[index])


def test_probe_reads_container_stream_and_gop(tmp_path: Path):
    probe = probe_video(write_video(tmp_path / "v.mp4", frames=40, fps=20, gop=10, audio=True))
    assert (probe.width, probe.height, probe.frame_count, probe.codec) == (64, 48, 40, "h264")
    assert probe.fps == pytest.approx(20.0)
    assert probe.duration == pytest.approx(2.0)
    assert probe.gop == pytest.approx(10.0)
    assert probe.has_audio and probe.bitrate and probe.rotation == 0


@pytest.mark.parametrize(("name", "codec"), [("v.webm", "libvpx-vp9"), ("v.mkv", "mpeg4")])
def test_other_containers_and_codecs_probe_and_sample(tmp_path: Path, name: str, codec: str):
    path = write_video(tmp_path / name, frames=12, codec=codec)
    assert probe_video(path).frame_count == 12
    assert sample_frames(path, 4).shape == (4, 48, 64, 3)


def test_rotation_metadata_turns_frames_upright(tmp_path: Path):
    path = write_video(tmp_path / "v.mp4", frames=8, rotation=90)
    assert probe_video(path).rotation == 90
    clip = sample_frames(path, 2)
    assert clip.shape == (2, 64, 48, 3)
    # the blue marker in the top-left corner of the coded frame moves to the bottom-left
    assert clip[0, -4, 4, 2] > 200 and clip[0, 4, 4, 2] < 50


def test_empty_file_fails_naming_the_video(tmp_path: Path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="empty_clip"):
        probe_video(path, name="empty_clip")


def test_corrupt_bytes_fail_naming_the_video(tmp_path: Path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="junk_clip"):
        probe_video(path, name="junk_clip")


def test_truncated_video_fails_naming_the_video(tmp_path: Path):
    full = write_video(tmp_path / "full.mkv", frames=60, codec="mpeg4").read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(full[: len(full) // 3])
    with pytest.raises(VideoError, match="cut_clip"):
        probe_video(path, name="cut_clip")
    with pytest.raises(VideoError, match="cut_clip"):
        sample_frames(path, 16, name="cut_clip")


@pytest.mark.parametrize("kept", [0.6, 0.8])
def test_a_video_cut_part_way_is_truncated_not_a_shorter_video(tmp_path: Path, kept: float):
    full = write_video(tmp_path / "full.mkv", frames=60, codec="mpeg4").read_bytes()
    path = tmp_path / "cut.mkv"
    path.write_bytes(full[: int(len(full) * kept)])
    with pytest.raises(VideoError, match=r"cut_clip.*truncated \(the container declares 2.40 s"):
        probe_video(path, name="cut_clip")


def test_audio_only_file_has_no_video_stream(tmp_path: Path):
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(path)
