"""Naive baselines: what an unoptimised script would do for the same stages, from the same inputs.

Each naive function does the job of its library stage and nothing more, the straightforward way:
frames come from `cv2.VideoCapture` reading a file one frame after another (the sampler decodes
the source in order up to the last frame it wants, and converts and keeps only the K frames it
wants; the feature stages read the same stored clip files as the library); features loop in
Python over 8x8 blocks (`cv2.dct` per block) and over block boundaries. The values agree with
`fvc_dagster.lib.features.forensic` up to float round-off (the bench checks this before it
reports times); only the way they are computed differs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fvc_dagster.lib.features.forensic import CodecCues

_NOISE_KERNEL = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32) / 8.0


def read_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB, decoded with OpenCV one frame after another."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def sample(path: Path, k: int) -> np.ndarray:
    """K uniformly spaced frames (the frame count from the container header): decode every frame
    in order up to the last one wanted (`grab`), convert and keep only the wanted ones."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    picks = np.linspace(0, count - 1, k).round().astype(int).tolist()
    wanted = set(picks)
    kept: dict[int, np.ndarray] = {}
    for number in range(picks[-1] + 1):
        if not capture.grab():
            break
        if number in wanted:
            kept[number] = cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
    capture.release()
    return np.stack([kept[i] for i in picks])


def _blockiness(g: np.ndarray) -> float:
    """Boundary over inner mean absolute neighbour difference, summed boundary by boundary."""
    h, w = g.shape
    boundary, n_boundary = 0.0, 0
    for x in range(7, w - 1, 8):
        boundary += float(np.abs(g[:, x + 1] - g[:, x]).sum())
        n_boundary += h
    for y in range(7, h - 1, 8):
        boundary += float(np.abs(g[y + 1] - g[y]).sum())
        n_boundary += w
    total = float(np.abs(np.diff(g, axis=1)).sum() + np.abs(np.diff(g, axis=0)).sum())
    n_inner = h * (w - 1) + (h - 1) * w - n_boundary
    return (boundary / n_boundary + 1e-6) / ((total - boundary) / n_inner + 1e-6)


def _frame_features(rgb: np.ndarray) -> list[float]:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g.shape
    noise = cv2.filter2D(g, -1, _NOISE_KERNEL)
    dc, ac = [], []
    for y in range(0, h - h % 8, 8):
        for x in range(0, w - w % 8, 8):
            coeffs = cv2.dct(np.ascontiguousarray(g[y : y + 8, x : x + 8]))
            dc.append(coeffs[0, 0])
            ac.append(coeffs.ravel()[1:])
    ac_abs = np.abs(np.concatenate(ac))
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3)
    grad = np.sqrt(cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2)
    return [
        float(np.mean(noise**2)),
        float(np.mean(np.abs(noise))),
        float(np.std(noise)),
        float(np.mean(dc)),
        float(np.std(dc)),
        float(ac_abs.mean()),
        float(ac_abs.std()),
        float((ac_abs**2).sum() / len(dc)),
        float(lap.var()),
        float(grad.mean()),
        float(grad.std()),
        _blockiness(g),
    ]


def handcrafted_features(clip: np.ndarray, cues: CodecCues) -> list[float]:
    """The 15 handcrafted features of a clip, frame by frame and block by block."""
    per_frame = np.array([_frame_features(frame) for frame in clip])
    bitrate = float("nan") if cues.bitrate is None else cues.bitrate
    fps = float("nan") if cues.fps is None else cues.fps
    return [*per_frame.mean(axis=0), bitrate, fps, cues.width * cues.height]


def features_stage(
    clips: list[tuple[Path, tuple[int, int, int, int] | None]], cues: CodecCues
) -> list[list[float]]:
    """The stage `handcrafted_features` does: read each stored clip file (inside its content
    box, for a scaled clip), then its naive features."""
    rows = []
    for path, box in clips:
        frames = np.stack(read_all(path))
        if box is not None:
            x, y, w, h = box
            frames = frames[:, y : y + h, x : x + w]
        rows.append(handcrafted_features(frames, cues))
    return rows


def scaled_features(path: Path, box: tuple[int, int, int, int]) -> list[float]:
    """Edge density, texture uniformity, colour spread and blockiness of a stored scaled clip."""
    x, y, w, h = box
    rows = []
    for frame in read_all(path):
        rgb = frame[y : y + h, x : x + w]
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        edges = np.count_nonzero(cv2.Canny(grey, 100, 200)) / grey.size
        g = grey.astype(np.float32)
        local_var = cv2.blur(g * g, (5, 5)) - cv2.blur(g, (5, 5)) ** 2
        spread = [float(np.std(rgb[..., c])) for c in range(3)]
        rows.append([edges, 1.0 / (1.0 + max(float(local_var.mean()), 0.0)), *spread])
        rows[-1].append(_blockiness(g))
    return list(np.mean(rows, axis=0))
