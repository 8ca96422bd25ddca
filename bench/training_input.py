"""The training input path: what reading a fold's clips from their files costs a network.

`python -m bench.training_input` writes letterboxed 16:9 clips (16 frames, 256 x 256 canvas) as
the scaled-clips asset stores them, then trains each network for two epochs through the
project's `fit` twice from the same seed: once fed by the path the network assets run
(`ClipDataset.for_input` reading the files: decode, content-box crop, resize to the model's
input, uint8 until `normalise_on_device`) and once from the same uint8 tensors already in
memory. Before timing, every item of the file path is checked equal to the in-memory one (the
in-memory clips are prepared from the frames before they were written, so the check covers
the lossless store, the crop and the resize), and both runs must end with the same losses.

Reported per network and epoch: training clips per second of each path, their ratio (the goal
is at most 1.10: the data path costs at most 10% more) and the trainer's data-wait share.
Epoch 1 decodes every clip; later epochs read the dataset's in-memory cache. One CPU,
one thread, like the stage bench.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import Dataset
from tqdm import tqdm

from bench.run import RESULTS, machine_info, synth_frames, write_atomic
from fvc_dagster.lib.clips.scaling import letterbox
from fvc_dagster.lib.clips.store import write_clip
from fvc_dagster.lib.models import build_model, get_spec
from fvc_dagster.lib.training.clip_data import ClipDataset, normaliser, prepare_clip
from fvc_dagster.lib.training.trainer import TrainConfig, fit, seed_everything

STORED_FRAMES = 16
GOAL = 1.10


class HeldClips(Dataset):
    """uint8 clips (N, 3, T, P, P) and their labels, held in memory: items like `ClipDataset`'s."""

    def __init__(self, clips: torch.Tensor, labels: np.ndarray):
        self.clips, self.labels = clips, labels

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"clip": self.clips[i], "label": torch.tensor(self.labels[i])}


def write_corpus(root: Path, n: int) -> tuple[list[dict], list[np.ndarray]]:
    """`n` scaled clips as the pipeline stores them (rows with path, label, content box) and
    their canvases as written."""
    rows, canvases = [], []
    for i in tqdm(range(n), desc="writing clips", unit="clip"):
        frames = np.stack(list(synth_frames(320, 180, STORED_FRAMES, seed=i)))
        scaled = letterbox(frames)
        path = root / f"v{i:03d}" / "c00.avi"
        write_clip(scaled.frames, path)
        x, y, w, h = scaled.content_box
        rows.append(
            {"path": str(path), "label": "fake" if i % 2 else "real", "content_x": x,
             "content_y": y, "scaled_width": w, "scaled_height": h}
        )  # fmt: skip
        canvases.append(scaled.frames)
    return rows, canvases


def held(rows: list[dict], canvases: list[np.ndarray], frames: int, pixels: int) -> HeldClips:
    """The clips prepared from the canvases in memory, never read from their files."""
    clips = [
        prepare_clip(c, frames, pixels, (r["content_x"], r["content_y"], r["scaled_width"],
                     r["scaled_height"]), crop=True)[0]
        for r, c in zip(rows, canvases, strict=True)
    ]  # fmt: skip
    tensor = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).contiguous()
    labels = np.array([float(r["label"] == "fake") for r in rows], np.float32)
    return HeldClips(tensor, labels)


def check_same_items(files: ClipDataset, memory: HeldClips) -> None:
    for i in range(len(files)):
        a, b = files[i], memory[i]
        if not (torch.equal(a["clip"], b["clip"]) and torch.equal(a["label"], b["label"])):
            raise SystemExit(f"bench: item {i} read from its file differs from the one in memory")


def train(name: str, train_set: Dataset, validation: Dataset, frames: int, pixels: int,
          epochs: int, batch: int) -> list[dict[str, float]]:  # fmt: skip
    spec = get_spec(name)
    seed_everything(0)  # the same initial weights for both paths, as the network assets do
    model = build_model(name)
    config = TrainConfig.from_recipe(
        spec.recipe, epochs=epochs, batch_size=batch, patience=None, seed=0
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        prepare = normaliser(spec.normalisation)
        result = fit(model, train_set, validation, config, checkpoints, prepare=prepare)
    return result.history


def measure(name: str, rows, canvases, n_train: int, epochs: int, batch: int,
            frames: int, pixels: int) -> list[dict]:  # fmt: skip
    split = {"train": slice(0, n_train), "validation": slice(n_train, None)}
    files = {k: ClipDataset.for_input(rows[s], "clip", frames, pixels) for k, s in split.items()}
    memory = {k: held(rows[s], canvases[s], frames, pixels) for k, s in split.items()}
    for k in split:
        check_same_items(ClipDataset.for_input(rows[split[k]], "clip", frames, pixels), memory[k])
    from_files = train(name, files["train"], files["validation"], frames, pixels, epochs, batch)
    in_memory = train(name, memory["train"], memory["validation"], frames, pixels, epochs, batch)
    out = []
    for f, m in zip(from_files, in_memory, strict=True):
        if not np.isclose(f["train_loss"], m["train_loss"], rtol=1e-5, atol=1e-6):
            raise SystemExit(
                f"bench: {name} epoch {f['epoch']}: train loss {f['train_loss']} from files, "
                f"{m['train_loss']} from memory: the two paths did not train the same"
            )
        out.append(
            {
                "model": name,
                "input": f"{frames}x{pixels}x{pixels}",
                "epoch": int(f["epoch"]),
                "files_clips_per_s": f["clips_per_s"],
                "memory_clips_per_s": m["clips_per_s"],
                "cost_ratio": m["clips_per_s"] / f["clips_per_s"],
                # The same cost from each run's own split of its step time: the compute is the
                # same in both, so this is free of the drift between the two runs.
                "wait_cost_ratio": (1 - m["data_wait_share"]) / (1 - f["data_wait_share"]),
                "files_data_wait_share": f["data_wait_share"],
                "memory_data_wait_share": m["data_wait_share"],
            }
        )
    return out


def summarise(rows: list[dict], info: dict[str, str], n_train: int, batch: int) -> str:
    lines = [
        "# Training input benchmark",
        "",
        f"{n_train} training clips per epoch, batch {batch}, fp32, one CPU thread, random "
        "weights; each clip stored as the scaled-clips asset writes it (16 frames, 256 x 256 "
        "canvas, 16:9 content box). `cost ratio` = seconds per training clip fed from the "
        "files / fed from memory (goal <= 1.10); `wait cost` the same ratio from each run's "
        "share of step time spent waiting for data (the compute being the same, it is free "
        "of the machine's drift between the two runs). Epoch 1 decodes every clip; later "
        "epochs hit the dataset's cache.",
        "",
        "| model | input | epoch | clips/s from files | clips/s from memory | cost ratio | "
        "wait cost | data wait (files) | data wait (memory) | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['epoch']} | {r['files_clips_per_s']:.2f} | "
            f"{r['memory_clips_per_s']:.2f} | {r['cost_ratio']:.3f}x | "
            f"{r['wait_cost_ratio']:.3f}x | "
            f"{r['files_data_wait_share']:.1%} | {r['memory_data_wait_share']:.1%} | "
            f"{'MET' if max(r['cost_ratio'], r['wait_cost_ratio']) <= GOAL else 'NOT MET'} |"
        )
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="naive_cnn,pretrained_inception")
    parser.add_argument("--clips", type=int, default=48, help="training clips")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--pixels", type=int, default=112)
    parser.add_argument("--quick", action="store_true", help="8 clips, naive_cnn at 8x64")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.clips, args.frames, args.pixels = "naive_cnn", 8, 8, 64
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    threadpool_limits(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="fvc-bench-train-") as tmp:
        rows, canvases = write_corpus(Path(tmp), args.clips + args.batch)
        for name in tqdm(args.models.split(","), desc="training", unit="model"):
            results += measure(
                name, rows, canvases, args.clips, args.epochs, args.batch, args.frames,
                args.pixels,
            )  # fmt: skip
    summary = summarise(results, machine_info(cpu), args.clips, args.batch)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_atomic(RESULTS / "training_input.md", lambda p: p.write_text(summary))
    print(summary)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
