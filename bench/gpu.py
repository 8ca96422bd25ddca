"""Where a CUDA GPU is lent: the trainer's mixed-precision paths measured on a real network.

`python -m bench.gpu` trains `pretrained_inception` (random weights) at 16x112x112 through the
project's `fit` for a few epochs in fp32, fp16 + GradScaler and bf16, on uint8 clips held in
memory and normalised on the device (the project's data path past the file read), and prints
clips per second of training, the data-wait share and the skipped (non-finite) steps per mode.
Nothing here runs in the tests: CI has no GPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from torch.utils.data import Dataset

from fvc_dagster.lib.models import build_model, get_spec
from fvc_dagster.lib.training.clip_data import normaliser
from fvc_dagster.lib.training.trainer import TrainConfig, fit


class HeldClips(Dataset):
    """`n` random uint8 clips (3, T, P, P) with alternating labels, held in memory."""

    def __init__(self, n: int, frames: int, pixels: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.clips = torch.randint(0, 256, (n, 3, frames, pixels, pixels), generator=generator)
        self.clips = self.clips.to(torch.uint8)
        self.labels = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"clip": self.clips[i], "label": self.labels[i].float()}


def measure(name: str, amp: str, clips: int, epochs: int, batch: int) -> dict:
    spec = get_spec(name)
    train = HeldClips(clips, spec.frames, spec.pixels)
    validation = HeldClips(max(batch, 16), spec.frames, spec.pixels, seed=1)
    model = build_model(name)
    config = TrainConfig.from_recipe(
        spec.recipe, epochs=epochs, batch_size=batch, device="cuda", amp=amp, patience=None
    )
    torch.cuda.synchronize()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as checkpoints:
        prepare = normaliser(spec.normalisation)
        result = fit(model, train, validation, config, checkpoints, prepare=prepare)
    torch.cuda.synchronize()
    last = result.history[-1]
    return {
        "model": name,
        "amp": amp,
        "epochs": epochs,
        "train_clips_per_s_last_epoch": round(last["clips_per_s"], 1),
        "data_wait_share_last_epoch": round(last["data_wait_share"], 4),
        "skipped_steps": result.skipped_steps,
        "finite_weights": all(torch.isfinite(p).all().item() for p in model.parameters()),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="pretrained_inception")
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu needs a CUDA GPU")
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}))
    for amp in ("off", "fp16", "bf16"):
        row = measure(args.model, amp, args.clips, args.epochs, args.batch)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
