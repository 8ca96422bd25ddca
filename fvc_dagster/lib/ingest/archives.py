"""Reading video archives safely: listings, FVC metadata, and atomic member extraction.

Nothing here inflates a member before its declared sizes pass the limits, and nothing is written
anywhere but the destination the caller names, whatever the member's name says. Two members
hold the same file only when their bytes are the same: size and CRC-32 tell different files
apart cheaply, a sha256 of the decrypted bytes decides when they cannot (see `same_content`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import stat
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import parse_qs, urlparse

import pyzipper
from pyzipper.zipfile_aes import WZ_SALT_LENGTHS

from fvc_dagster.lib.atomic import replacing
from fvc_dagster.lib.ingest.splits import parse_split

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".flv",
        ".3gp",
        ".mpg",
        ".mpeg",
        ".ts",
        ".wmv",
    }
)
METADATA_EXTENSION = ".csv"
DEFAULT_LABEL_MAP: Mapping[str, str] = {"real": "real", "fake": "fake"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_DIGITS = re.compile(r"(\d{6,})")


class ArchiveError(Exception):
    """A problem with one archive or one of its members; the message names both."""

    def __init__(self, archive: str, reason: str, member: str | None = None):
        where = f"archive '{archive}'" + (f", member '{member}'" if member else "")
        super().__init__(f"{where}: {reason}")
        self.archive = archive
        self.member = member
        self.reason = reason


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb guards, checked on the declared sizes before anything is inflated, and the bound
    on what failed videos may keep in quarantine. The defaults pass a real FVC archive (a few
    thousand videos of under 100 MB each)."""

    max_member_bytes: int = 8 * 1024**3
    max_archive_bytes: int = 512 * 1024**3  # declared total of an archive's members
    max_compression_ratio: float = 100.0
    # members this small skip the ratio check one by one (they may compress well without being
    # bombs); together they must pass it
    ratio_floor_bytes: int = 1024**2
    max_members: int = 20_000
    max_metadata_bytes: int = 64 * 1024**2  # a metadata CSV is read whole, in the sensor too
    max_quarantine_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class VideoEntry:
    """A video member of an archive, matched to metadata by its id (the file stem).

    `crc` is None where the member stores none (AE-2 encryption writes 0); `sealed` is an AES
    member's salt and authentication code, the same only for the same stored bytes.
    """

    video_id: str
    archive: str
    member: str
    size: int
    crc: int | None
    sealed: str | None = None


@dataclass
class ArchiveListing:
    """What one archive holds, read from its central directory and metadata CSVs only."""

    archive: str
    videos: list[VideoEntry] = field(default_factory=list)
    metadata: list[dict[str, str | None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[ArchiveError] = field(default_factory=list)
    fingerprint: str = ""  # of its members: names, sizes, content as far as the listing shows
    copy: bool = False  # the fingerprint was already known: no video or metadata is listed


def safe_video_key(stem: str) -> str:
    """A partition-safe id for a file stem: the stem itself when safe, else a slug plus a hash."""
    if _SAFE_KEY.match(stem):
        return stem
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:96] or "video"
    return f"{slug}-{hashlib.sha1(stem.encode()).hexdigest()[:8]}"


def parse_video_url(url: str) -> tuple[str, str]:
    """The (video_id, platform) of a YouTube, Facebook or Twitter video URL."""
    parsed = urlparse(url.strip())
    host = (parsed.hostname or "").lower().removeprefix("www.").removeprefix("m.")
    if host in {"youtube.com", "youtu.be"} or host.endswith(".youtube.com"):
        candidates = parse_qs(parsed.query).get("v", []) + [
            p for p in parsed.path.split("/") if p and p not in {"watch", "embed", "shorts", "v"}
        ]
        for candidate in candidates:
            if _YOUTUBE_ID.match(candidate):
                return candidate, "youtube"
        raise ValueError(f"no YouTube video id in {url!r}")
    platform = next(
        (
            name
            for name in ("facebook", "twitter")
            if name in host or (name, host) == ("twitter", "x.com")
        ),
        host or "unknown",
    )
    digits = _DIGITS.findall(parsed.path + "?" + parsed.query)
    if not digits:
        raise ValueError(f"no numeric video id in {url!r}")
    return digits[-1], platform


def parse_metadata_csv(text: str, source: str) -> list[dict[str, str | None]]:
    """Rows of `video_id, raw_label, platform, dup_group, split` from an FVC or a plain
    metadata CSV.

    FVC layout: `cascade_id,video_url,label` (the cascade is the duplicate group). Plain layout:
    `video_id,label[,dup_group][,platform]`. Either may add a `split` column, `train` or `test`
    (`lib.ingest.splits`); another value refuses the CSV, naming its line.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    lines = (
        (number, {k.strip().lower(): (v or "").strip() for k, v in row.items() if k})
        for number, row in enumerate(reader, start=2)
    )
    rows: list[dict[str, str | None]] = []
    if {"video_url", "label"} <= columns:
        for number, row in lines:
            try:
                video_id, platform = parse_video_url(row["video_url"])
            except ValueError as exc:
                raise ValueError(f"{source} line {number}: {exc}") from None
            cascade = row.get("cascade_id") or video_id
            split = parse_split(row.get("split"), f"{source} line {number}")
            rows.append(_metadata_row(video_id, row["label"], platform, cascade, split, source))
    elif {"video_id", "label"} <= columns:
        for number, row in lines:
            video_id = row["video_id"]
            platform, group = row.get("platform") or None, row.get("dup_group") or video_id
            split = parse_split(row.get("split"), f"{source} line {number}")
            rows.append(_metadata_row(video_id, row["label"], platform, group, split, source))
    else:
        raise ValueError(
            f"{source}: unknown metadata columns {sorted(columns)}; expected "
            "cascade_id,video_url,label or video_id,label,dup_group,platform"
        )
    return rows


def _metadata_row(
    video_id: str, label: str, platform: str | None, group: str, split: str | None, source: str
):
    return {
        "video_id": safe_video_key(video_id),
        "raw_label": label.lower() or None,
        "platform": platform,
        "dup_group": group,
        "split": split,
        "source": source,
    }


def _unsafe_member_reason(info: pyzipper.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute member name refused"
    if ".." in parts:
        return "path traversal ('..') in member name refused"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link member refused"
    return None


def _bomb_reason(info: pyzipper.ZipInfo, limits: ArchiveLimits) -> str | None:
    if info.file_size > limits.max_member_bytes:
        return f"declared size {info.file_size} B exceeds the {limits.max_member_bytes} B limit"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_compression_ratio:
        limit = limits.max_compression_ratio
        return f"compression ratio {ratio:.0f}:1 exceeds {limit:.0f}:1 (zip bomb?)"
    return None


def _archive_limit_reason(infos: list[pyzipper.ZipInfo], limits: ArchiveLimits) -> str | None:
    """Why an archive must be refused whole: too many members, too many bytes declared, or its
    small members (each under the ratio floor) inflating past the compression-ratio limit
    together."""
    if len(infos) > limits.max_members:
        return f"{len(infos)} members exceed the limit of {limits.max_members} members per archive"
    total = sum(i.file_size for i in infos)
    if total > limits.max_archive_bytes:
        return f"declared total {total} B exceeds the limit of {limits.max_archive_bytes} B"
    small = [i for i in infos if i.file_size <= limits.ratio_floor_bytes]
    inflated = sum(i.file_size for i in small)
    ratio = inflated / max(sum(i.compress_size for i in small), 1)
    if inflated > limits.ratio_floor_bytes and ratio > limits.max_compression_ratio:
        return (
            f"{len(small)} small members inflate to {inflated} B, {ratio:.0f}:1, over the "
            f"compression-ratio limit of {limits.max_compression_ratio:.0f}:1 (zip bomb?)"
        )
    return None


def _refusal_reason(
    info: pyzipper.ZipInfo, duplicates: Mapping[str, str], limits: ArchiveLimits
) -> str | None:
    """Why a member must be refused on its own: an ambiguous duplicate name, an unsafe name or
    type, or a zip bomb."""
    return (
        duplicates.get(info.filename) or _unsafe_member_reason(info) or _bomb_reason(info, limits)
    )


def _open(path: Path) -> pyzipper.AESZipFile:
    try:
        return pyzipper.AESZipFile(path)
    except (pyzipper.BadZipFile, OSError) as exc:
        raise ArchiveError(path.name, f"not a readable zip archive ({exc})") from None


def _read_member(
    zf: pyzipper.AESZipFile, archive: str, info: pyzipper.ZipInfo, password: str | None
) -> pyzipper.zipfile.ZipExtFile:
    encrypted = bool(info.flag_bits & 0x1)
    if encrypted and not password:
        raise ArchiveError(
            archive, "member is encrypted and FVC_ZIP_PASSWORD is not set", info.filename
        )
    try:
        return zf.open(info, pwd=password.encode() if encrypted and password else None)
    except RuntimeError as exc:  # pyzipper reports a bad password as RuntimeError
        raise ArchiveError(archive, f"wrong password ({exc})", info.filename) from None


@contextlib.contextmanager
def _member_data(archive: str, member: str) -> Iterator[None]:
    """Turn a damaged member's data (bad CRC, corrupt or truncated deflate stream, a bad
    encryption header) into an ArchiveError naming the archive and the member."""
    try:
        yield
    except (pyzipper.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ArchiveError(archive, f"corrupt member data ({exc})", member) from None


def _stored_crc(info: pyzipper.ZipInfo) -> int | None:
    """The member's CRC-32, or None where it stores none (AE-2 encryption writes 0)."""
    return None if getattr(info, "wz_aes_version", None) == 2 else info.CRC


def _sealed(raw: BinaryIO, archive: str, info: pyzipper.ZipInfo) -> str | None:
    """An AES member's method, stored size, salt and authentication code (an HMAC of the stored
    bytes under a key made from the password and the salt): equal only for the same stored
    bytes, so for the same content. Read from the archive without decrypting; None if not AES."""
    if getattr(info, "wz_aes_strength", None) is None:
        return None
    raw.seek(info.header_offset)
    header = raw.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ArchiveError(archive, "corrupt local header", info.filename)
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little")
    start += int.from_bytes(header[28:30], "little")
    raw.seek(start)
    salt = raw.read(WZ_SALT_LENGTHS[info.wz_aes_strength])
    raw.seek(start + info.compress_size - 10)
    return f"{info.compress_type}:{info.compress_size}:{salt.hex()}:{raw.read(10).hex()}"


def _copy_content(info: pyzipper.ZipInfo) -> str:
    """What tells one copy of a name from another: its size and CRC-32. An AE-2 encrypted member
    stores no CRC, so a non-empty one is never provably the same as another copy."""
    if _stored_crc(info) is None and info.file_size:
        return f"{info.file_size} B, AE-2 encrypted without CRC (copy at byte {info.header_offset})"
    return f"{info.file_size} B, CRC-32 {info.CRC:08x}"


def _differing_duplicates(infos: Iterable[pyzipper.ZipInfo]) -> dict[str, str]:
    """A refusal reason for each name the central directory lists more than once with different
    content; copies of one content are one member. zipfile returns only one of the entries, so
    neither is ever taken silently in place of the other."""
    contents: dict[str, list[str]] = {}
    for info in infos:
        contents.setdefault(info.filename, []).append(_copy_content(info))
    return {
        name: f"name listed {len(copies)} times with different content "
        f"({'; '.join(copies)}); no copy is used in place of another: rename or remove all but one"
        for name, copies in contents.items()
        if len(set(copies)) > 1
    }


def archive_fingerprint(members: Iterable[tuple[str, int, str]]) -> str:
    """A digest of an archive's (name, size, content) members: equal for the same content."""
    return hashlib.sha256(json.dumps(sorted(members)).encode()).hexdigest()[:32]


def _read_metadata(
    zf: pyzipper.AESZipFile,
    archive: str,
    info: pyzipper.ZipInfo,
    password: str | None,
    limits: ArchiveLimits,
) -> bytes:
    """A metadata CSV's decrypted bytes, refused unread when it declares more than the limit."""
    if info.file_size > limits.max_metadata_bytes:
        raise ArchiveError(
            archive,
            f"metadata CSV of {info.file_size} B exceeds the limit of "
            f"{limits.max_metadata_bytes} B; its labels are not read",
            info.filename,
        )
    with _member_data(archive, info.filename), _read_member(zf, archive, info, password) as stream:
        return stream.read()


def list_archive(
    path: Path,
    password: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
    known_fingerprints: Collection[str] = (),
) -> ArchiveListing:
    """Read an archive's listing and metadata CSVs without inflating any video.

    Its fingerprint covers every member's name and size, and its content as far as the listing
    shows it: a metadata CSV by the sha256 of its decrypted bytes, an AES member by its seal, any
    other by its CRC-32. When the fingerprint is in `known_fingerprints` (a copy of an archive
    already read) nothing more is read and the listing has `copy` set.
    Raises ArchiveError when the whole archive must be refused (unreadable, over a limit, bad
    password); unsafe or damaged members, and a name listed twice with different content, are
    refused one by one and reported in `refused`.
    """
    archive = path.name
    listing = ArchiveListing(archive=archive)
    with _open(path) as zf, open(path, "rb") as raw:
        infos = zf.infolist()
        if reason := _archive_limit_reason(infos, limits):
            raise ArchiveError(archive, reason)
        duplicates, seen, accepted = _differing_duplicates(infos), set(), []
        for info in infos:
            name = info.filename
            if info.is_dir() or name in seen:
                continue
            seen.add(name)
            pure = PurePosixPath(name.replace("\\", "/"))
            if pure.name.startswith("._") or "__MACOSX" in pure.parts:
                listing.skipped.append(name)
            elif reason := _refusal_reason(info, duplicates, limits):
                listing.refused.append(ArchiveError(archive, reason, name))
            else:
                accepted.append((info, pure))
        if probe := next((info for info, _ in accepted if info.flag_bits & 0x1), None):
            # verifies the password from the member header; corrupt data after it fails this
            # archive (ArchiveError), not the scan
            with (
                _member_data(archive, probe.filename),
                _read_member(zf, archive, probe, password) as stream,
            ):
                stream.read(1)
        tables = {}
        for info, pure in accepted:
            if pure.suffix.lower() == METADATA_EXTENSION:
                try:
                    tables[info.filename] = _read_metadata(zf, archive, info, password, limits)
                except ArchiveError as exc:
                    listing.refused.append(exc)
        seals = {info.filename: _sealed(raw, archive, info) for info in infos}
        listing.fingerprint = archive_fingerprint(
            (
                info.filename,
                info.file_size,
                hashlib.sha256(tables[info.filename]).hexdigest()
                if info.filename in tables
                else seals[info.filename] or f"{info.CRC:08x}",
            )
            for info in infos
        )
        if listing.fingerprint in known_fingerprints:
            return ArchiveListing(archive=archive, fingerprint=listing.fingerprint, copy=True)
        for info, pure in accepted:
            name, suffix = info.filename, pure.suffix.lower()
            if suffix in VIDEO_EXTENSIONS:
                listing.videos.append(
                    VideoEntry(
                        safe_video_key(pure.stem),
                        archive,
                        name,
                        info.file_size,
                        _stored_crc(info),
                        seals[name],
                    )
                )
            elif name in tables:
                text = tables[name].decode("utf-8", errors="replace")
                try:
                    listing.metadata.extend(parse_metadata_csv(text, f"{archive}:{name}"))
                except ValueError as exc:
                    listing.refused.append(ArchiveError(archive, str(exc), name))
            elif suffix != METADATA_EXTENSION:
                listing.skipped.append(name)
    return listing


@contextlib.contextmanager
def _member_stream(
    archive_path: Path, member: str, password: str | None, limits: ArchiveLimits
) -> Iterator[pyzipper.zipfile.ZipExtFile]:
    """A member's decrypted, inflated bytes, once its name and declared sizes pass; damaged data
    is an ArchiveError naming the archive and the member."""
    archive = archive_path.name
    with _open(archive_path) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise ArchiveError(archive, "member not found", member) from None
        if reason := _refusal_reason(info, _differing_duplicates(zf.infolist()), limits):
            raise ArchiveError(archive, reason, member)
        with _member_data(archive, member), _read_member(zf, archive, info, password) as stream:
            yield stream


def member_sha256(
    archive_path: Path,
    member: str,
    password: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
    chunk_bytes: int = 1 << 20,
) -> str:
    """The sha256 of a member's decrypted bytes, streamed: nothing is written."""
    digest = hashlib.sha256()
    with _member_stream(archive_path, member, password, limits) as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def extract_member(
    archive_path: Path,
    member: str,
    destination: Path,
    password: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
    chunk_bytes: int = 1 << 20,
    expected: tuple[str, str] | None = None,
) -> str:
    """Extract one member to `destination` atomically and return its sha256.

    With `expected` (sha256, where it comes from), other bytes are an ArchiveError and
    `destination` is left as it was.

    The member's own name never decides where bytes go. Its declared sizes pass the limits
    before anything is inflated; zipfile's reader then stops at the declared size (a stream
    holding more is cut there) and checks the CRC, so a member whose data disagrees with its
    header fails, named, and nothing is renamed into place.
    """
    digest = hashlib.sha256()
    with (
        _member_stream(archive_path, member, password, limits) as stream,
        replacing(destination) as tmp,
    ):
        with open(tmp, "wb") as out:
            while chunk := stream.read(chunk_bytes):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if expected and digest.hexdigest() != expected[0]:
            raise ArchiveError(
                archive_path.name,
                f"its bytes (sha256 {digest.hexdigest()[:12]}) differ from those "
                f"{expected[1]} (sha256 {expected[0][:12]}); nothing was replaced",
                member,
            )
    return digest.hexdigest()


class MemberDigests:
    """The sha256 of inbox members' decrypted bytes, each read when first asked for and then
    remembered (for one scan or one run: archives may change between them)."""

    def __init__(
        self, inbox: Path, password: str | None = None, limits: ArchiveLimits = ArchiveLimits()
    ):
        self.inbox, self.password, self.limits = inbox, password, limits
        self._known: dict[tuple[str, str], str] = {}

    def of(self, entry: VideoEntry) -> str:
        key = (entry.archive, entry.member)
        if key not in self._known:
            self._known[key] = member_sha256(
                self.inbox / entry.archive, entry.member, self.password, self.limits
            )
        return self._known[key]


def same_content(a: VideoEntry, b: VideoEntry, digests: MemberDigests) -> bool:
    """Whether two members hold the same bytes. Sizes or stored CRC-32s that differ say no
    without reading; equal seals (the same stored AES bytes) and the same member of the same
    archive say yes; otherwise both are read and their sha256s decide (equal sizes and CRCs are
    not proof, and an AE-2 member stores no CRC)."""
    if a.size != b.size or (None not in (a.crc, b.crc) and a.crc != b.crc):
        return False
    if (a.sealed and a.sealed == b.sealed) or (a.archive, a.member) == (b.archive, b.member):
        return True
    return digests.of(a) == digests.of(b)


@dataclass
class InboxIndex:
    """Every video of every readable archive in an inbox, with its metadata and the problems met.

    `videos` holds, per id, every member that carries it, in archive-name order; `source_of`
    decides which one a video is extracted from, reading members through `digests` where only
    their bytes can tell.
    """

    digests: MemberDigests
    videos: dict[str, list[VideoEntry]]
    metadata: dict[str, dict[str, str | None]]
    archive_errors: list[ArchiveError]
    refused: list[ArchiveError]
    skipped: list[tuple[str, str]]
    merges: list[str]  # what merging the archives' metadata rows decided, one line each

    def label_of(
        self, video_id: str, label_map: Mapping[str, str] = DEFAULT_LABEL_MAP
    ) -> str | None:
        raw = (self.metadata.get(video_id) or {}).get("raw_label")
        return label_map.get(raw) if raw else None

    def source_of(self, video_id: str, registered: tuple[str, str] | None = None) -> VideoEntry:
        """The member a video comes from: its registered (archive, member) while that is in the
        inbox, else the one member content that carries the id (copies are one content).

        Different files under one id are an ArchiveError naming every archive involved: one is
        never silently taken in place of the other.
        """
        entries = self.videos.get(video_id)
        if not entries:
            problems = [str(e) for e in self.archive_errors + self.refused]
            raise ArchiveError(
                "inbox",
                f"video {video_id!r} is in no readable archive" + "; ".join(["", *problems]),
            )
        for entry in entries:
            if (entry.archive, entry.member) == registered:
                return entry
        if conflict := conflicting_sources(video_id, entries, self.digests):
            raise conflict
        return entries[0]


def conflicting_sources(
    video_id: str, entries: Iterable[VideoEntry], digests: MemberDigests
) -> ArchiveError | None:
    """An ArchiveError naming the archives when `entries` hold different files for one id (or
    one of them cannot be read to tell)."""
    first, *others = entries
    try:
        if all(same_content(first, other, digests) for other in others):
            return None
        problem = "has different content in"
    except ArchiveError as exc:  # a copy that cannot be read is not shown to be the same
        problem = f"cannot be compared ({exc}) across"
    where = ", ".join(f"'{e.archive}' member '{e.member}'" for e in (first, *others))
    return ArchiveError(
        first.archive, f"video {video_id!r} {problem} {where}; remove or rename one", first.member
    )


def archive_paths(inbox: Path) -> list[Path]:
    """The archives of an inbox, in name order."""
    return sorted(p for p in inbox.glob("*.zip") if p.is_file()) if inbox.is_dir() else []


def _describe(row: Mapping[str, str | None]) -> str:
    split = f", split {row['split']}" if row.get("split") else ""
    return f"label {row.get('raw_label')}, cascade {row.get('dup_group')}{split}"


def index_listings(listings: Iterable[ArchiveListing], digests: MemberDigests) -> InboxIndex:
    """Merge archive listings: every member of a video id is kept; a video's metadata row is
    the first in archive-name order, and each later row for it is recorded in `merges`."""
    index = InboxIndex(digests, {}, {}, [], [], [], [])
    for listing in listings:
        for entry in listing.videos:
            index.videos.setdefault(entry.video_id, []).append(entry)
        for row in listing.metadata:
            video_id = row["video_id"]
            kept = index.metadata.setdefault(video_id, row)
            if kept is row:
                continue
            same = _describe(kept) == _describe(row)
            index.merges.append(
                f"video {video_id!r}: metadata of {kept.get('source')} ({_describe(kept)}) kept; "
                + (
                    f"{row.get('source')} repeats it"
                    if same
                    else f"{row.get('source')} ({_describe(row)}) ignored"
                )
            )
        index.refused.extend(listing.refused)
        index.skipped.extend((listing.archive, member) for member in listing.skipped)
    return index


def archive_failure(path: Path, exc: Exception) -> ArchiveError:
    """What reading an archive raised, as the ArchiveError that names it."""
    return exc if isinstance(exc, ArchiveError) else ArchiveError(path.name, f"unreadable ({exc})")


def index_inbox(
    inbox: Path, password: str | None = None, limits: ArchiveLimits = ArchiveLimits()
) -> InboxIndex:
    """List every archive in the inbox; an archive that fails is recorded, the rest still count."""
    listings, errors = [], []
    for path in archive_paths(inbox):
        try:
            listings.append(list_archive(path, password, limits))
        except (ArchiveError, pyzipper.BadZipFile, OSError) as exc:
            errors.append(archive_failure(path, exc))
    index = index_listings(listings, MemberDigests(inbox, password, limits))
    index.archive_errors = errors
    return index
