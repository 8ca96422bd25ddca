import hashlib
import shutil
import warnings
import zipfile
import zlib

import pytest
import pyzipper

from conftest import (
    break_deflate_stream,
    corrupt_encrypted_zip,
    fvc_metadata,
    set_declared_size,
    write_zip,
)
from fvc_dagster.lib.ingest.archives import (
    ArchiveError,
    ArchiveLimits,
    MemberDigests,
    _archive_limit_reason,
    extract_member,
    index_inbox,
    index_listings,
    list_archive,
    parse_metadata_csv,
    parse_video_url,
    safe_video_key,
)
from fvc_dagster.lib.ingest.extraction import quarantine_file
from fvc_dagster.lib.ingest.inbox import ScanState, plan_scan


def write_zip_entries(path, entries, password=None):
    """A zip listing the (name, bytes) entries in order, a repeated name included (zipfile warns
    "Duplicate name" and writes it again); AES-encrypted (AE-2) with `password`."""
    archive = (
        pyzipper.AESZipFile(path, "w", encryption=pyzipper.WZ_AES)
        if password
        else zipfile.ZipFile(path, "w")
    )
    with warnings.catch_warnings(), archive:
        warnings.simplefilter("ignore", UserWarning)
        if password:
            archive.setpassword(password.encode())
        for name, data in entries:
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", ("dQw4w9WgXcQ", "youtube")),
        ("https://youtu.be/-abc_DEF123", ("-abc_DEF123", "youtube")),
        ("https://www.facebook.com/somepage/videos/1234567890123/", ("1234567890123", "facebook")),
        ("https://twitter.com/user/status/987654321098765432", ("987654321098765432", "twitter")),
    ],
)
def test_video_url_gives_id_and_platform(url, expected):
    assert parse_video_url(url) == expected


def test_unsafe_stems_become_safe_distinct_partition_keys():
    assert safe_video_key("dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    keys = {safe_video_key(s) for s in ["a,b", "a|b", "a[b]", "a...b", "my clip (1)"]}
    assert len(keys) == 5
    assert not any(ch in key for key in keys for ch in ",|[]") and not any("..." in k for k in keys)


def test_fvc_metadata_maps_cascades_to_duplicate_groups():
    csv_text = fvc_metadata([("c1", "aaaaaaaaaaa", "fake"), ("c1", "bbbbbbbbbbb", "REAL")]).decode()
    rows = parse_metadata_csv(csv_text, "FVC.csv")
    row = {"platform": "youtube", "dup_group": "c1", "split": None, "source": "FVC.csv"}
    assert rows == [
        {"video_id": "aaaaaaaaaaa", "raw_label": "fake", **row},
        {"video_id": "bbbbbbbbbbb", "raw_label": "real", **row},
    ]


def test_plain_metadata_csv_is_accepted():
    rows = parse_metadata_csv(
        "video_id,label,dup_group,platform\nv1,fake,g1,tiktok\nv2,real,,\n", "m.csv"
    )
    assert rows[0] == {
        "video_id": "v1",
        "raw_label": "fake",
        "platform": "tiktok",
        "dup_group": "g1",
        "split": None,
        "source": "m.csv",
    }
    assert rows[1]["dup_group"] == "v2"


def test_a_split_column_declares_train_or_test_in_either_layout():
    fvc = fvc_metadata([("c1", "aaaaaaaaaaa", "fake"), ("c2", "bbbbbbbbbbb", "real")], ["Test", ""])
    assert [r["split"] for r in parse_metadata_csv(fvc.decode(), "FVC.csv")] == ["test", None]
    plain = "video_id,label,split\nv1,fake,train\nv2,real,test\n"
    assert [r["split"] for r in parse_metadata_csv(plain, "m.csv")] == ["train", "test"]


@pytest.mark.parametrize(
    "text",
    [
        fvc_metadata(
            [("c1", "aaaaaaaaaaa", "fake"), ("c2", "bbbbbbbbbbb", "real")], ["test", "holdout"]
        ).decode(),  # fmt: skip
        "video_id,label,split\nv1,fake,train\nv2,real,holdout\n",
    ],
)
def test_a_split_that_is_neither_train_nor_test_is_refused_naming_its_line(text):
    with pytest.raises(ValueError, match="m.csv line 3: split 'holdout' is neither train nor test"):
        parse_metadata_csv(text, "m.csv")


def test_unknown_metadata_columns_are_refused_naming_the_file():
    with pytest.raises(ValueError, match="odd.csv"):
        parse_metadata_csv("a,b\n1,2\n", "odd.csv")


def test_listing_matches_videos_and_skips_other_members(tmp_path, video_bytes):
    archive = write_zip(
        tmp_path / "FVC1.zip",
        {
            "v1.mp4": video_bytes(),
            "sub/v2.webm": b"x",
            "notes.txt": b"hi",
            "__MACOSX/._v1.mp4": b"",
        },
    )
    listing = list_archive(archive)
    assert [(v.video_id, v.member) for v in listing.videos] == [
        ("v1", "v1.mp4"),
        ("v2", "sub/v2.webm"),
    ]
    assert set(listing.skipped) == {"notes.txt", "__MACOSX/._v1.mp4"}


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.mp4", "path traversal"),
        ("/abs/evil.mp4", "absolute"),
        ("..\\win.mp4", "path traversal"),
    ],
)
def test_unsafe_member_names_are_refused_naming_archive_and_member(tmp_path, member, reason):
    archive = write_zip(tmp_path / "bad.zip", {member: b"x", "ok.mp4": b"y"})
    listing = list_archive(archive)
    assert [v.video_id for v in listing.videos] == ["ok"]
    (error,) = listing.refused
    assert reason in str(error) and "bad.zip" in str(error) and member in str(error)
    with pytest.raises(ArchiveError, match=reason):
        extract_member(archive, member, tmp_path / "store" / "evil.mp4")
    assert not (tmp_path.parent / "evil.mp4").exists() and not (tmp_path / "store").exists()


def test_symlink_members_are_refused(tmp_path):
    archive = write_zip(
        tmp_path / "links.zip", {"ok.mp4": b"y"}, symlinks={"link.mp4": "/etc/passwd"}
    )
    (error,) = list_archive(archive).refused
    assert "symbolic link" in str(error) and "link.mp4" in str(error)
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_member(archive, "link.mp4", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.mp4", b"\0" * (20 * 1024**2))  # 20 MiB of zeros: ratio ~1000:1
    listing = list_archive(archive)
    assert listing.videos == [] and "compression ratio" in str(listing.refused[0])
    with pytest.raises(ArchiveError, match="compression ratio"):
        extract_member(archive, "bomb.mp4", tmp_path / "bomb.mp4")
    assert list(tmp_path.iterdir()) == [archive]


def test_declared_member_size_over_the_limit_is_refused_before_inflating(tmp_path):
    archive = write_zip(tmp_path / "big.zip", {"huge.mp4": b"tiny"})
    set_declared_size(archive, "huge.mp4", 3 * 1024**3)  # the header claims 3 GiB
    limits = ArchiveLimits(max_member_bytes=1024**3)
    (error,) = list_archive(archive, limits=limits).refused
    assert "declared size 3221225472 B exceeds" in str(error) and "huge.mp4" in str(error)
    with pytest.raises(ArchiveError, match="big.zip.*huge.mp4.*declared size"):
        extract_member(archive, "huge.mp4", tmp_path / "store" / "huge.mp4", limits=limits)
    assert not (tmp_path / "store").exists()  # refused before anything was opened or written


def test_a_member_holding_more_than_it_declares_is_cut_there_and_fails(tmp_path, video_bytes):
    data = video_bytes()
    archive = write_zip(tmp_path / "a.zip", {"v1.mp4": data})
    set_declared_size(archive, "v1.mp4", len(data) // 2)
    with pytest.raises(ArchiveError, match="a.zip.*v1.mp4.*corrupt member data.*CRC"):
        extract_member(archive, "v1.mp4", tmp_path / "store" / "v1.mp4")
    assert list((tmp_path / "store").iterdir()) == []


def test_corrupt_deflate_data_is_an_error_naming_archive_and_member(tmp_path, video_bytes):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("v1.mp4", video_bytes())
        zf.writestr("FVC.csv", fvc_metadata([("c", "v1", "fake")]))
    break_deflate_stream(archive, "v1.mp4")
    break_deflate_stream(archive, "FVC.csv")
    with zipfile.ZipFile(archive) as zf, pytest.raises(zlib.error):
        zf.read("v1.mp4")  # the planted fault is a broken deflate stream, not just a bad CRC
    with pytest.raises(ArchiveError, match="a.zip.*v1.mp4.*corrupt member data"):
        extract_member(archive, "v1.mp4", tmp_path / "store" / "v1.mp4")
    assert list((tmp_path / "store").iterdir()) == []
    listing = list_archive(archive)  # a broken metadata member is refused alone
    assert [e.member for e in listing.refused] == ["FVC.csv"] and len(listing.videos) == 1


def test_a_video_in_two_archives_keeps_its_registered_source_and_conflicts_are_named(
    tmp_path, video_bytes
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, other = video_bytes(seed=1), video_bytes(seed=2)
    write_zip(inbox / "B.zip", {"vid00000001.mp4": first, "vid00000002.mp4": first})
    write_zip(inbox / "A.zip", {"vid00000001.mp4": first})  # sorts first: a copy
    write_zip(inbox / "C.zip", {"vid00000002.mp4": other})  # different bytes, same id
    index = index_inbox(inbox)
    assert index.source_of("vid00000001").archive == "A.zip"  # copies: any one will do
    assert index.source_of("vid00000001", ("B.zip", "vid00000001.mp4")).archive == "B.zip"
    assert index.source_of("vid00000002", ("B.zip", "vid00000002.mp4")).archive == "B.zip"
    with pytest.raises(ArchiveError, match="vid00000002.*different content.*B.zip.*C.zip"):
        index.source_of("vid00000002")


def test_metadata_merges_are_recorded(tmp_path):
    rows = [("c1", "aaaaaaaaaaa", "fake")]
    listings = []
    for name, label in (("A.zip", "fake"), ("B.zip", "real"), ("C.zip", "fake")):
        write_zip(tmp_path / name, {"FVC.csv": fvc_metadata([(*rows[0][:2], label)])})
        listings.append(list_archive(tmp_path / name))
    index = index_listings(listings, MemberDigests(tmp_path))
    assert index.label_of("aaaaaaaaaaa") == "fake"
    assert index.merges == [
        "video 'aaaaaaaaaaa': metadata of A.zip:FVC.csv (label fake, cascade c1) kept; "
        "B.zip:FVC.csv (label real, cascade c1) ignored",
        "video 'aaaaaaaaaaa': metadata of A.zip:FVC.csv (label fake, cascade c1) kept; "
        "C.zip:FVC.csv repeats it",
    ]


def test_oversized_archive_is_refused_whole(tmp_path, video_bytes):
    archive = write_zip(tmp_path / "big.zip", {"v.mp4": video_bytes()})
    with pytest.raises(ArchiveError, match="big.zip.*exceeds"):
        list_archive(archive, limits=ArchiveLimits(max_archive_bytes=100))


def test_encrypted_archive_needs_the_right_password(tmp_path, video_bytes):
    archive = write_zip(tmp_path / "secret.zip", {"v1.mp4": video_bytes()}, password="s3cret")
    assert [v.video_id for v in list_archive(archive, "s3cret").videos] == ["v1"]
    with pytest.raises(ArchiveError, match="secret.zip.*wrong password"):
        list_archive(archive, "nope")
    with pytest.raises(ArchiveError, match="FVC_ZIP_PASSWORD is not set"):
        list_archive(archive, None)
    with pytest.raises(ArchiveError, match="wrong password"):
        extract_member(archive, "v1.mp4", tmp_path / "v1.mp4", password="nope")
    assert not (tmp_path / "v1.mp4").exists()


def test_extraction_is_atomic_and_checksummed(tmp_path, video_bytes):
    import hashlib

    data = video_bytes()
    archive = write_zip(tmp_path / "a.zip", {"deep/dir/v1.mp4": data})
    target = tmp_path / "store" / "v1.mp4"
    assert extract_member(archive, "deep/dir/v1.mp4", target) == hashlib.sha256(data).hexdigest()
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["v1.mp4"]  # no temp file left behind


def test_corrupt_member_data_fails_and_leaves_nothing(tmp_path, video_bytes):
    archive = write_zip(tmp_path / "a.zip", {"v1.mp4": video_bytes()})
    raw = bytearray(archive.read_bytes())
    raw[100:140] = b"\xff" * 40  # inside the stored member data: CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="a.zip.*v1.mp4.*corrupt"):
        extract_member(archive, "v1.mp4", tmp_path / "store" / "v1.mp4")
    assert list((tmp_path / "store").iterdir()) == []


def test_a_wrong_password_fails_that_archive_only(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_zip(inbox / "FVC1.zip", {"aaaaaaaaaaa.mp4": video_bytes()}, password="other")
    write_zip(inbox / "FVC2.zip", {"bbbbbbbbbbb.mp4": video_bytes()}, password="right")
    write_zip(inbox / "Metadata.zip", {"FVC.csv": fvc_metadata([("c", "bbbbbbbbbbb", "fake")])})
    index = index_inbox(inbox, "right")
    assert list(index.videos) == ["bbbbbbbbbbb"]
    assert [e.archive for e in index.archive_errors] == ["FVC1.zip"]
    assert "wrong password" in str(index.archive_errors[0])
    assert index.label_of("bbbbbbbbbbb") == "fake"


def test_not_a_zip_is_refused_naming_it(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="fake.zip.*not a readable zip"):
        list_archive(tmp_path / "fake.zip")


def test_a_name_listed_twice_with_different_content_is_refused_and_the_rest_still_count(
    tmp_path, video_bytes
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, other = video_bytes(seed=1), video_bytes(seed=2)
    entries = [("dup00000001.mp4", first), ("ok000000001.mp4", first)]
    archive = write_zip_entries(inbox / "A.zip", [*entries, ("dup00000001.mp4", other)])
    with zipfile.ZipFile(archive) as zf:  # zipfile itself would silently hand out one copy
        assert [i.filename for i in zf.infolist()].count("dup00000001.mp4") == 2
    listing = list_archive(archive)
    assert [v.member for v in listing.videos] == ["ok000000001.mp4"]
    (error,) = listing.refused
    assert (error.archive, error.member) == ("A.zip", "dup00000001.mp4")
    message = "archive 'A.zip', member 'dup00000001.mp4': name listed 2 times with different"
    assert str(error).startswith(message)
    index = index_inbox(inbox)
    assert list(index.videos) == ["ok000000001"]
    assert [str(e) for e in index.refused] == [str(error)]
    with pytest.raises(ArchiveError, match="no readable archive.*A.zip.*dup00000001.mp4.*listed"):
        index.source_of("dup00000001")
    store = tmp_path / "store"
    with pytest.raises(ArchiveError, match=message):
        extract_member(archive, "dup00000001.mp4", store / "dup00000001.mp4")
    assert not store.exists()
    assert (
        extract_member(archive, "ok000000001.mp4", store / "ok.mp4")
        == hashlib.sha256(first).hexdigest()
    )


def test_exact_duplicate_entries_are_one_member(tmp_path, video_bytes):
    data = video_bytes()
    archive = write_zip_entries(tmp_path / "A.zip", [("v1.mp4", data), ("v1.mp4", data)])
    listing = list_archive(archive)
    assert [v.member for v in listing.videos] == ["v1.mp4"] and listing.refused == []
    target = tmp_path / "store" / "v1.mp4"
    assert extract_member(archive, "v1.mp4", target) == hashlib.sha256(data).hexdigest()


def test_ae2_encrypted_copies_without_a_crc_are_never_taken_as_one(tmp_path):
    archive = write_zip_entries(tmp_path / "A.zip", [("v1.mp4", b"x"), ("v1.mp4", b"y")], "pw")
    (error,) = list_archive(archive, "pw").refused
    assert "member 'v1.mp4': name listed 2 times" in str(error) and "without CRC" in str(error)
    with pytest.raises(ArchiveError, match="v1.mp4.*without CRC"):
        extract_member(archive, "v1.mp4", tmp_path / "v1.mp4", "pw")


def test_a_corrupt_encrypted_archive_fails_alone_in_every_scan(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    corrupt_encrypted_zip(inbox / "FVC1.zip", {"aaaaaaaaaaa.mp4": video_bytes()}, "right")
    write_zip(inbox / "FVC2.zip", {"bbbbbbbbbbb.mp4": video_bytes()}, password="right")
    index = index_inbox(inbox, "right")
    assert list(index.videos) == ["bbbbbbbbbbb"]
    (error,) = index.archive_errors
    assert error.archive == "FVC1.zip" and "corrupt member data" in str(error)
    plan = plan_scan(inbox, ScanState(), [], "right")
    assert plan.new_videos == ["bbbbbbbbbbb"]
    assert [e.archive for e in plan.errors] == ["FVC1.zip"]


def test_an_encrypted_metadata_archive_is_fingerprinted_by_its_decrypted_csv(tmp_path):
    path = tmp_path / "Metadata.zip"
    write_zip(path, {"FVC.csv": fvc_metadata([("c", "aaaaaaaaaaa", "real")])}, password="pw")
    first = list_archive(path, "pw")
    write_zip(path, {"FVC.csv": fvc_metadata([("c", "aaaaaaaaaaa", "fake")])}, password="pw")
    relabelled = list_archive(path, "pw", known_fingerprints={first.fingerprint})
    assert not relabelled.copy and relabelled.metadata[0]["raw_label"] == "fake"
    shutil.copy(path, tmp_path / "copy.zip")  # the same bytes: a copy, its CSV read to know it
    known = {relabelled.fingerprint}
    assert list_archive(tmp_path / "copy.zip", "pw", known_fingerprints=known).copy


def test_same_size_encrypted_videos_in_two_archives_are_one_source_only_when_equal(
    tmp_path, video_bytes
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = video_bytes()
    other = data[:-1] + bytes([data[-1] ^ 1])  # the same size, other bytes
    write_zip(inbox / "A.zip", {"vid00000001.mp4": data, "vid00000002.mp4": data}, "pw")
    write_zip(inbox / "B.zip", {"vid00000001.mp4": data, "vid00000002.mp4": other}, "pw")
    index = index_inbox(inbox, "pw")
    assert index.source_of("vid00000001").archive == "A.zip"
    with pytest.raises(ArchiveError, match="vid00000002.*different content.*A.zip.*B.zip"):
        index.source_of("vid00000002")


def test_a_copy_that_cannot_be_read_is_not_taken_for_the_same_file(tmp_path, video_bytes):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = video_bytes()
    write_zip(inbox / "A.zip", {"vid00000001.mp4": data})
    write_zip(inbox / "B.zip", {"vid00000001.mp4": data})
    index = index_inbox(inbox)
    (inbox / "B.zip").write_bytes(b"gone")
    unreadable = "video 'vid00000001' cannot be compared .*'B.zip': not a readable zip"
    with pytest.raises(ArchiveError, match=unreadable):
        index.source_of("vid00000001")


def test_the_default_limits_pass_a_real_fvc_archive():
    """A few thousand videos of under 100 MB (stored: videos do not compress) and the CSVs."""
    infos = []
    for n in range(5000):
        info = pyzipper.ZipInfo(f"{n:011d}.mp4")
        info.file_size, info.compress_size = 99_000_000, 98_900_000
        infos.append(info)
    for name in ("FVC.csv", "FVC_dup.csv"):
        info = pyzipper.ZipInfo(name)
        info.file_size, info.compress_size = 600_000, 90_000
        infos.append(info)
    assert _archive_limit_reason(infos, ArchiveLimits()) is None


def test_an_archive_over_the_member_limit_is_refused_whole_naming_it(tmp_path):
    archive = write_zip(tmp_path / "many.zip", {f"v{n}.mp4": b"x" for n in range(5)})
    refusal = "^archive 'many.zip': 5 members exceed the limit of 4 members per archive$"
    with pytest.raises(ArchiveError, match=refusal):
        list_archive(archive, limits=ArchiveLimits(max_members=4))


def test_small_members_that_inflate_together_past_the_ratio_are_refused(tmp_path):
    """Members under the 1 MiB floor skip the ratio check one by one, not together."""
    archive = tmp_path / "small.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in range(3):
            zf.writestr(f"v{n}.mp4", b"\0" * 512 * 1024)
    with pytest.raises(
        ArchiveError,
        match=r"^archive 'small.zip': 3 small members inflate to 1572864 B, \d+:1, over the "
        r"compression-ratio limit of 100:1",
    ):
        list_archive(archive)
    table = fvc_metadata([("c", f"v{n:010d}", "fake") for n in range(10_000)])
    with zipfile.ZipFile(tmp_path / "csv.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("FVC.csv", table)  # compresses well, and is under 1 MiB: not a bomb
    assert len(list_archive(tmp_path / "csv.zip").metadata) == 10_000


def test_a_metadata_csv_over_its_limit_is_refused_unread_and_the_videos_still_count(
    tmp_path, video_bytes
):
    table = fvc_metadata([("c", "v1", "fake")])
    archive = write_zip(tmp_path / "a.zip", {"v1.mp4": video_bytes(), "FVC.csv": table})
    break_deflate_stream(archive, "FVC.csv")  # were it read, it would fail as corrupt data
    listing = list_archive(archive, limits=ArchiveLimits(max_metadata_bytes=len(table) - 1))
    assert [v.member for v in listing.videos] == ["v1.mp4"] and listing.metadata == []
    (error,) = listing.refused
    assert str(error) == (
        f"archive 'a.zip', member 'FVC.csv': metadata CSV of {len(table)} B exceeds the limit of "
        f"{len(table) - 1} B; its labels are not read"
    )


def test_quarantine_keeps_failed_files_within_its_limit(tmp_path):
    quarantine = tmp_path / "quarantine"
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    first.write_bytes(b"a" * 600)
    second.write_bytes(b"b" * 600)
    assert quarantine_file(first, quarantine, 1000) == f"moved to {quarantine / 'a.mp4'}"
    assert quarantine_file(second, quarantine, 1000) == (
        "not kept: quarantine/ holds 600 B, and this file would pass its limit of 1000 B"
    )
    assert not second.exists() and [p.name for p in quarantine.iterdir()] == ["a.mp4"]
    first.write_bytes(b"A" * 700)  # the same video failing again replaces its earlier file
    assert quarantine_file(first, quarantine, 1000) == f"moved to {quarantine / 'a.mp4'}"
