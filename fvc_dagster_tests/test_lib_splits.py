import pandas as pd
import pytest

from fvc_dagster.lib.ingest.splits import (
    TEST,
    TRAIN,
    VideoSplit,
    archive_patterns,
    parse_split,
    video_split,
    videos_in_test_split,
)

PATTERNS = archive_patterns(" Shifted*.zip, ,Test*.zip")


def test_patterns_are_a_comma_separated_list():
    assert PATTERNS == ("Shifted*.zip", "Test*.zip")
    assert archive_patterns(None) == archive_patterns("") == ()


@pytest.mark.parametrize(
    ("archive", "declared", "expected"),
    [
        (
            "FVC1.zip",
            None,
            VideoSplit(TRAIN, "no split declared and the archive matches no test-archive pattern"),
        ),  # fmt: skip
        ("FVC1.zip", TRAIN, VideoSplit(TRAIN, "split column of Metadata.zip:FVC.csv says train")),
        ("FVC1.zip", TEST, VideoSplit(TEST, "split column of Metadata.zip:FVC.csv says test")),
        (
            "Shifted_vp9.zip",
            None,
            VideoSplit(
                TEST, "archive 'Shifted_vp9.zip' matches test-archive pattern 'Shifted*.zip'"
            ),
        ),
        (
            "Test1.zip",
            TRAIN,  # the archive pattern wins over a declared train
            VideoSplit(TEST, "archive 'Test1.zip' matches test-archive pattern 'Test*.zip'"),
        ),
        (
            "shifted.zip",
            None,
            VideoSplit(TRAIN, "no split declared and the archive matches no test-archive pattern"),
        ),  # fmt: skip
    ],
)
def test_a_video_is_test_by_its_metadata_or_its_archive_name(archive, declared, expected):
    assert video_split(archive, declared, PATTERNS, "Metadata.zip:FVC.csv") == expected


def test_a_split_value_is_train_or_test_in_any_case_and_anything_else_is_named():
    assert [parse_split(v, "m.csv line 2") for v in ("TEST", " train ", "", None)] == [
        TEST, TRAIN, None, None,
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"m.csv line 7: split 'validate' is neither"):
        parse_split("validate", "m.csv line 7")


def test_test_videos_are_decided_again_from_the_stored_rows():
    stored = pd.DataFrame(
        {
            "video_id": ["a", "b", "c", "d"],
            "archive": ["FVC1.zip", "Shifted1.zip", "FVC1.zip", "FVC1.zip"],
            "declared_split": [None, None, TEST, None],
            "split": [TRAIN, TRAIN, TRAIN, TEST],  # b and c were stored wrongly as train
        }
    )
    assert videos_in_test_split(stored, PATTERNS).to_dict("records") == [
        {
            "video_id": "b",
            "reason": "archive 'Shifted1.zip' matches test-archive pattern 'Shifted*.zip'",
        },  # fmt: skip
        {"video_id": "c", "reason": "split column of metadata says test"},
        {"video_id": "d", "reason": "source_videos says test"},
    ]
