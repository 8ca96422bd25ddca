import json

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from conftest import write_video
from fvc_dagster.lib.clips.augment import AUG_TYPES, apply_augmentation
from fvc_dagster.lib.clips.scaling import letterbox
from fvc_dagster.lib.clips.store import read_clip
from fvc_dagster.lib.clips.video_clips import ORIGINAL, make_clips, parallel_map, scale_clip
from fvc_dagster.lib.features.forensic import HANDCRAFTED_FEATURES, SCALED_FEATURES
from fvc_dagster.lib.features.rows import clip_feature_row, codec_cues, scaled_feature_row
from fvc_dagster.lib.ingest.video import (
    PacketIndex,
    VideoError,
    packet_index_path,
    probe_video,
    sample_frames,
)


def test_every_clip_is_reproduced_bit_for_bit_from_its_row(tmp_path):
    source = write_video(tmp_path / "v.mp4", frames=20, size=(80, 48))
    rows, first_frames = make_clips("vid", source, 6, tmp_path / "clips")
    assert [r["aug_index"] for r in rows] == [ORIGINAL, *range(10)]
    assert [r["aug_type"] for r in rows] == ["original", *AUG_TYPES]
    original = read_clip(tmp_path / "clips" / "vid__orig.avi")
    np.testing.assert_array_equal(original, sample_frames(source, 6))
    for row, first in zip(rows[1:], first_frames[1:], strict=True):
        stored = read_clip(tmp_path / "clips" / f"{row['clip_id']}.avi")
        np.testing.assert_array_equal(
            apply_augmentation(original, json.loads(row["params"])), stored
        )
        np.testing.assert_array_equal(first, stored[0])
        assert (row["frames"], row["width"], row["height"]) == (6, 80, 48)


def test_clips_sample_with_the_packet_index_stored_at_probing(tmp_path, monkeypatch):
    source = write_video(tmp_path / "v.mp4", frames=30, size=(64, 48), gop=7)
    probe = probe_video(source)
    probe.index.save(packet_index_path(source))
    stored = PacketIndex.load(packet_index_path(source))
    np.testing.assert_array_equal(stored.frame_pts, probe.index.frame_pts)
    np.testing.assert_array_equal(stored.keyframe_positions, probe.index.keyframe_positions)
    expected = sample_frames(source, 5)  # demuxes the source itself
    demuxes = []
    monkeypatch.setattr(
        "fvc_dagster.lib.ingest.video._packet_index", lambda *a: demuxes.append(a) or probe.index
    )
    rows, _ = make_clips("vid", source, 5, tmp_path / "clips")
    assert demuxes == []  # the stored index was used: the source is demuxed once, at probing
    np.testing.assert_array_equal(read_clip(tmp_path / "clips" / "vid__orig.avi"), expected)


def test_clip_rows_carry_features_and_scaled_clips_their_sizes(tmp_path):
    source = write_video(tmp_path / "v.mp4", frames=12, size=(64, 48))
    rows, _ = make_clips("vid", source, 4, tmp_path / "clips")
    cues = codec_cues({"bitrate": 5e5, "fps": 25.0, "width": 64, "height": 48})
    features = clip_feature_row(rows[0], cues)
    assert list(features)[3:] == list(HANDCRAFTED_FEATURES)
    assert features["codec_resolution"] == 64 * 48
    scaled, first = scale_clip(rows[0], letterbox, tmp_path / "scaled", "letterbox")
    assert (scaled["original_width"], scaled["original_height"]) == (64, 48)
    assert (scaled["scaled_width"], scaled["scaled_height"], scaled["canvas_size"]) == (
        256,
        192,
        256,
    )
    assert (scaled["content_x"], scaled["content_y"], scaled["method"]) == (0, 32, "letterbox")
    assert first.shape == (256, 256, 3)
    stage4 = scaled_feature_row(scaled)
    assert list(stage4)[3:] == list(SCALED_FEATURES)
    assert (stage4["is_upscaled"], stage4["is_downscaled"]) == (1.0, 0.0)


def test_frames_too_small_for_the_features_fail_that_video_by_name(tmp_path):
    source = write_video(tmp_path / "tiny.mkv", frames=4, size=(8, 6), codec="mpeg4")
    rows, _ = make_clips("tinyvid", source, 2, tmp_path / "clips")
    cues = codec_cues({"bitrate": None, "fps": 25.0, "width": 8, "height": 6})
    with pytest.raises(VideoError, match="tinyvid.*tinyvid__orig.*9x9"):
        clip_feature_row(rows[0], cues)


def test_parallel_map_keeps_order_and_runs_each_worker_on_one_thread():
    def threads_seen(item):
        blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
        return item, cv2.getNumThreads(), blas

    cv2.setNumThreads(2)
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            seen = parallel_map(threads_seen, list(range(5)))
            assert [item for item, _, _ in seen] == list(range(5))
            assert {(opencv, frozenset(blas)) for _, opencv, blas in seen} == {(1, frozenset({1}))}
            assert cv2.getNumThreads() == 2  # restored
            assert threads_seen(None)[2] == {2}
    finally:
        cv2.setNumThreads(-1)
