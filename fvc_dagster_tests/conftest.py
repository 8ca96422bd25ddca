"""Tiny videos and archives that the tests write themselves."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest
import pyzipper
import requests

if TYPE_CHECKING:
    import pandas as pd


def write_video(
    path: Path,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    gop: int = 12,
    codec: str = "libx264",
    rotation: int = 0,
    audio: bool = False,
    seed: int = 0,
) -> Path:
    """A small video whose frame n has red channel ~ 8*n (so sampled frame numbers are visible)."""
    width, height = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 60, (height, width), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = container.add_stream("aac", rate=16000) if audio else None
        for n in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0] = min(8 * n, 255)
            image[..., 1] = texture
            image[: height // 2, : width // 4, 2] = 255  # marks the top-left corner
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            samples = np.zeros((1, 1024), np.float32)
            for i in range(frames * 16000 // fps // 1024 + 1):
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 16000, i * 1024
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)
    return path


def write_zip(
    path: Path,
    members: dict[str, bytes],
    password: str | None = None,
    symlinks: dict[str, str] | None = None,
) -> Path:
    """A zip of the given members (AES-encrypted with `password`), plus symlink members."""
    if password:
        archive = pyzipper.AESZipFile(path, "w", encryption=pyzipper.WZ_AES)
        archive.setpassword(password.encode())
    else:
        archive = zipfile.ZipFile(path, "w")
    with archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


@pytest.fixture
def video_bytes(tmp_path: Path):
    """Bytes of a fresh tiny video (keyword arguments as for write_video)."""

    def make(**kwargs) -> bytes:
        path = tmp_path / f"_v{len(list(tmp_path.glob('_v*')))}.mp4"
        return write_video(path, **kwargs).read_bytes()

    return make


@pytest.fixture(scope="module")
def video_bytes_factory(tmp_path_factory):
    """Like `video_bytes`, for module-scoped fixtures."""
    folder = tmp_path_factory.mktemp("videos")

    def make(**kwargs) -> bytes:
        return write_video(folder / f"_v{len(list(folder.glob('_v*')))}.mp4", **kwargs).read_bytes()

    return make


def fvc_metadata(rows: list[tuple[str, str, str]], splits: Sequence[str] | None = None) -> bytes:
    """An FVC.csv (`cascade_id,video_url,label`) for (cascade, youtube id, label) rows, with a
    `split` column of `splits` (one a row) when given."""
    lines = ["cascade_id,video_url,label" + (",split" if splits is not None else "")] + [
        f"{cascade},https://www.youtube.com/watch?v={vid},{label}"
        + (f",{splits[i]}" if splits is not None else "")
        for i, (cascade, vid, label) in enumerate(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def labelled_video(make_video, seed: int, fake: bool, frames: int = 8) -> bytes:
    """A tiny video of a labelled inbox: fakes run at 30 fps, reals at 25, a codec cue the
    baselines separate perfectly, so a model clears its chance band."""
    return make_video(frames=frames, seed=seed, fps=30 if fake else 25)


def labelled_metadata(
    videos: Sequence[str],
    labels: Sequence[str] | None = None,
    cascades: Sequence[str] | None = None,
) -> bytes:
    """The FVC.csv of a labelled inbox: a cascade each (`c<i>` unless `cascades` names them),
    real and fake in turn unless `labels` says otherwise."""
    labels = labels or ["fake" if i % 2 else "real" for i in range(len(videos))]
    cascades = cascades or [f"c{i}" for i in range(len(videos))]
    return fvc_metadata(list(zip(cascades, videos, labels, strict=True)))


def write_labelled_inbox(
    inbox: Path,
    videos: Sequence[str],
    make_video,
    *,
    unlabelled: Sequence[str] = (),
    extra: dict[str, bytes] | None = None,
    cascades: Sequence[str] | None = None,
    frames: int = 8,
    first_seed: int = 0,
    archive: str = "FVC1.zip",
    metadata: str = "Metadata.zip",
) -> Path:
    """An inbox of `videos` (`labelled_video`: real and fake in turn, seeds from `first_seed`)
    in `archive` and their FVC.csv (`labelled_metadata`: a cascade each, two a fold with ten)
    in `metadata` (the same archive when it is named so). `unlabelled` videos follow them in
    the archive, absent from the metadata; `extra` members (a corrupt file) come last.
    `make_video` is the `video_bytes` or `video_bytes_factory` fixture. Returns the inbox."""
    inbox.mkdir(parents=True, exist_ok=True)
    every = [*videos, *unlabelled]
    members = {
        f"{v}.mp4": labelled_video(make_video, first_seed + i, i % 2, frames)
        for i, v in enumerate(every)
    }
    table = {"FVC.csv": labelled_metadata(videos, cascades=cascades)}
    if metadata == archive:
        members.update(table)
    write_zip(inbox / archive, {**members, **(extra or {})})
    if metadata != archive:
        write_zip(inbox / metadata, table)
    return inbox


def with_test_rows(training_clips: pd.DataFrame) -> pd.DataFrame:
    """`training_clips` with `test` rows in every fold: fold 0's validation clips again, as a
    test video's original clips would be (their features, embeddings and files exist), under
    video ids of their own (`test-<video_id>`), as no test video trains a fold."""
    import pandas as pd

    first = training_clips[(training_clips["fold"] == 0) & (training_clips["role"] == "validation")]
    first = first.assign(video_id="test-" + first["video_id"])
    tests = [first.assign(fold=fold, role="test") for fold in training_clips["fold"].unique()]
    return pd.concat([training_clips, *tests], ignore_index=True)


def query(root: Path, sql: str) -> pd.DataFrame:
    """`sql` on the data root's DuckDB warehouse, read-only, as a DataFrame."""
    import duckdb

    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def archive_sensor_tick(defs, instance, cursor: str | None) -> tuple[list, str]:
    """One evaluation of `archive_sensor` from `cursor`, as the daemon runs it: the videos it
    registers are added to the instance; its run requests and its new cursor."""
    import dagster as dg

    sensor = defs.resolve_sensor_def("archive_sensor")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=dict(defs.resources), cursor=cursor
    ) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return list(result.run_requests or []), result.cursor


def tiny_vae():
    """A diffusers AutoencoderKL small enough for CPU tests: two blocks (downsamples by 2), no
    mid-block attention. Saved with `save_pretrained`, it loads exactly like real weights."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        mid_block_add_attention=False,
    )


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory) -> Path:
    """A folder holding a saved tiny AutoencoderKL (config.json + safetensors)."""
    path = tmp_path_factory.mktemp("weights") / "vae"
    tiny_vae().save_pretrained(path)
    return path


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (small models: threads cost more than they give)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REPO = Path(__file__).resolve().parents[1]
TOOL_CACHES = {".pytest_cache", ".ruff_cache", "__pycache__"}


@pytest.fixture(scope="session", autouse=True)
def nothing_is_written_under_the_repo():
    """Tests write under tmp_path only: fail the session if a new top-level entry appears."""
    before = {p.name for p in REPO.iterdir()}
    yield
    created = {p.name for p in REPO.iterdir()} - before - TOOL_CACHES
    assert not created, f"tests wrote under the repository: {sorted(created)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    """A client of the Dagster webserver's GraphQL API."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        response = requests.post(
            self.url, json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe: Callable, timeout: float, interval: float = 3.0):
        """Poll `probe` until it returns a truthy value; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := probe():
                    return value
            except requests.RequestException:
                pass
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def running_dagster_dev(workspace: Path, env: dict[str, str], log: Path) -> Iterator[GraphQL]:
    """`dagster dev` (webserver, daemon, code server) on `workspace` in its own process group,
    its output in `log`: a GraphQL client once the webserver answers; all of it killed after."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-p", str(port)],
            cwd=workspace.parent,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        graphql = GraphQL(port)
        try:
            graphql.wait_for("the webserver", lambda: graphql("{ version }")["version"], 180)
            yield graphql
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def check_named(result, name: str):
    """The one evaluation of the asset check `name` in a run's result."""
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def member_data_offset(archive: Path, member: str) -> int:
    """Where a member's (compressed) data starts in an archive: after its local header."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    header = archive.read_bytes()[info.header_offset : info.header_offset + 30]
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


def break_deflate_stream(archive: Path, member: str) -> None:
    """Make a deflated member's first block header invalid (BTYPE 11): inflating it raises
    zlib.error, not only a CRC mismatch."""
    raw = bytearray(archive.read_bytes())
    raw[member_data_offset(archive, member)] = 0x07  # BFINAL 1, BTYPE 3 (reserved)
    archive.write_bytes(bytes(raw))


def set_declared_size(archive: Path, member: str, size: int) -> None:
    """Rewrite a member's uncompressed size in the central directory (what readers trust)."""
    raw = bytearray(archive.read_bytes())
    name = member.encode()
    entry = raw.index(b"PK\x01\x02")  # the central directory entries
    while raw[entry + 46 : entry + 46 + len(name)] != name:
        entry = raw.index(b"PK\x01\x02", entry + 4)
    raw[entry + 24 : entry + 28] = size.to_bytes(4, "little")
    archive.write_bytes(bytes(raw))


# The order in which `make test`'s workers take files (`--dist loadfile`, kept by
# `--no-loadscope-reorder`): the longest first, one each (minutes, measured in docs/testing.md),
# so that no worker ends alone on a long file. pytest-xdist hands a worker its next file while it
# still has two tests to run: a long file of one or two tests is followed by a quick file of many
# tests, which its worker takes at once instead of a long one.
SLOWEST_FIRST = (
    "test_e2e_dagster_dev.py",  # 6 min, one test
    "test_defs_networks.py",
    "test_defs_training.py",
    "test_lib_archives.py",
    "test_defs_staleness.py",  # two tests
    "test_lib_augment.py",
    "test_defs_champion.py",
    "test_scaleout_loopback.py",  # two tests
    "test_lib_features.py",
    "test_local_demo_recovery.py",  # one test
    "test_lib_video.py",
    "test_defs_test_archives.py",
    "test_e2e_killed_runs.py",  # two tests
    "test_lib_inbox.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files in `SLOWEST_FIRST` order, then the others as collected."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def corrupt_encrypted_zip(path, members: dict[str, bytes], password: str):
    """An AES-encrypted, deflated zip whose first member's first deflate block header is
    invalid (BTYPE 11): the password checks out, inflating raises zlib.error. AES runs in
    counter mode, so flipping a ciphertext bit flips the same plaintext bit."""
    with pyzipper.AESZipFile(
        path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as archive:
        archive.setpassword(password.encode())
        for name, data in members.items():
            archive.writestr(name, data)
    first = next(iter(members))
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    plain = deflater.compress(members[first]) + deflater.flush()
    raw = bytearray(path.read_bytes())
    start = member_data_offset(path, first) + 16 + 2  # after the AES-256 salt and verifier
    raw[start] ^= plain[0] ^ 0x07  # BFINAL 1, BTYPE 3 (reserved)
    path.write_bytes(bytes(raw))
    with pyzipper.AESZipFile(path) as archive, pytest.raises(zlib.error, match="block type"):
        archive.open(first, pwd=password.encode()).read(1)  # the planted fault
    return path
