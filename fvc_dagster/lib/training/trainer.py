"""One trainer for every binary video network: `fit(model, train, selection, config, ckpt_dir)`.

The trainer knows nothing about any network. It needs:

- a model giving one logit per sample, (B, 1) or (B,), called as
  ``model(*[batch[k] for k in config.input_keys])`` (``("clip",)``, ``("clip", "box")`` for
  clip+box models, ``("clip", "flow")`` for clip+flow models);
- a training dataset and, optionally, a selection dataset: map-style, items are dicts of
  tensors with a float ``"label"`` (1 = fake), collated by the default collate into a dict of
  batched tensors; they may expose ``labels`` (a 1-D array) so class weights need not read
  every item. The selection set chooses the epoch and stops early; it must never be the data
  the model is scored on (an inner split of the training folds). Without one the trainer runs
  every epoch and keeps the last;
- optionally ``prepare(batch) -> batch``, run after the batch reaches the device (e.g.
  ``functools.partial(clip_data.normalise_on_device, mean=..., std=...)`` for uint8 clips).

What it does, per `TrainConfig`: AdamW (no weight decay on 1-D parameters: biases and norms),
linear warmup then cosine decay stepped per optimizer step, BCE-with-logits with
``pos_weight = n_neg / n_pos`` of the training labels, gradient accumulation, clipping by global
norm, mixed precision on CUDA only (bf16 autocast, or fp16 autocast with a GradScaler; always
fp32 on CPU, where bf16 autocast corrupts Conv3d weight gradients), no optimizer step on a
non-finite gradient (counted), early stopping on selection ROC-AUC, fixed seeds, and an atomic
checkpoint after every epoch from which a rerun with the same directory resumes by itself and
ends exactly where an uninterrupted run ends (bit-exact on CPU, with or without DataLoader
workers: each training item is read with the python, numpy and torch RNGs seeded by a seed
drawn with the epoch's order, so an item's random crop depends neither on the process that
reads it nor on what it read before).

Files in the checkpoint directory: ``best.pt`` (the best epoch's weights, metrics and config,
written when an epoch beats the best) and ``last.pt``, written after each epoch: while training,
everything needed to resume (weights, optimizer, scheduler, RNG states); once training has
finished, only the history and the kept epoch's metrics and selection scores, the weights being
those of ``best.pt`` (a finished fold keeps one copy of its final weights, no optimizer state).
Both are written to a temp file in the same directory and moved into place with ``os.replace``.
`predict` scores a dataset (the held-out fold) once with the weights `fit` kept.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from fvc_dagster.lib.atomic import replacing

CHECKPOINT_FORMAT = 1
LAST, BEST = "last.pt", "best.pt"
LABEL = "label"
# Fields that may differ between a run and the one resuming it (they do not change the numbers:
# CPU and CUDA differ in rounding only; workers read items as the main process does).
_RESUMABLE_FIELDS = ("device", "num_workers")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `warmup_steps` (optimizer steps) wins over `warmup_epochs` when set;
    `clip_grad_norm` None or 0 disables clipping; `patience` None disables early stopping (an
    epoch counts as better when its validation ROC-AUC beats the best by more than `min_delta`;
    with a one-class validation set the negative validation loss is monitored instead).
    `amp`: "auto" (bf16 where the GPU supports it, else fp16 + GradScaler), "bf16", "fp16" or
    "off"; ignored on CPU, which always trains in fp32. `min_lr_ratio`: the cosine's floor as a
    share of `lr`."""

    epochs: int = 15
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.0
    grad_accumulation: int = 1
    clip_grad_norm: float | None = 1.0
    class_weights: bool = True
    patience: int | None = 5
    min_delta: float = 0.0
    seed: int = 0
    device: str = "cpu"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    input_keys: tuple[str, ...] = ("clip",)
    num_workers: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accumulation < 1:
            raise ValueError("epochs, batch_size and grad_accumulation must be at least 1")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        object.__setattr__(self, "input_keys", tuple(self.input_keys))

    @classmethod
    def from_recipe(cls, recipe: Any, **overrides: Any) -> TrainConfig:
        """A config from a registry `Recipe` (lr, batch_size, epochs, weight_decay) + overrides."""
        base = {k: getattr(recipe, k) for k in ("lr", "batch_size", "epochs", "weight_decay")}
        return cls(**{**base, **overrides})


@dataclass
class TrainResult:
    """`history`: one dict per epoch (epoch (1-based), train_loss, val_loss, val_roc_auc (on the
    selection set; NaN without one), seconds, train_seconds, data_wait_share, clips_per_s,
    skipped_steps, optimizer_steps, grad_norm_max (before clipping; non-finite ones excluded),
    lr). `val_probabilities`: the kept model's P(fake) for the selection items, in dataset order
    (empty without a selection set). The model passed to `fit` holds the kept epoch's weights
    (the best on the selection set, or the last) when it returns."""

    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    val_probabilities: np.ndarray
    skipped_steps: int
    best_checkpoint: Path
    last_checkpoint: Path
    stopped_early: bool
    pos_weight: float | None
    resumed_from_epoch: int = 0
    monitor: str = "val_roc_auc"
    extra: dict[str, Any] = field(default_factory=dict)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The 0/1 labels of a dataset: its `labels` attribute, or read item by item."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [float(dataset[i][LABEL]) for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.float64).reshape(-1)


def positive_weight(labels: np.ndarray) -> float:
    """n_neg / n_pos of the training labels (the BCE `pos_weight`)."""
    n_pos = float((labels > 0.5).sum())
    n_neg = float(len(labels) - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"class weights need both classes; got {n_pos:.0f} fake, {n_neg:.0f} real")
    return n_neg / n_pos


def lr_lambda(
    total_steps: int, warmup_steps: int, min_ratio: float = 0.0
) -> Callable[[int], float]:
    """The LR multiplier at optimizer step s: linear warmup to 1 over `warmup_steps` steps
    ((s + 1) / warmup, so the first step does not waste a zero LR), then cosine to `min_ratio` at
    the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps - 1)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def call_model(model: nn.Module, batch: Mapping[str, torch.Tensor], keys: Sequence[str]):
    """The model's logits for a batch, one per sample, shape (B,)."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"batch has no {missing} (has {sorted(batch)}); check input_keys")
    logits = model(*[batch[k] for k in keys])
    if isinstance(logits, tuple | list):
        logits = logits[0]
    return logits.reshape(len(batch[LABEL]), -1)[:, 0]


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside `path`, flushed to disk, then moved over it."""
    with replacing(path) as tmp, open(tmp, "wb") as out:
        torch.save(obj, out)
        out.flush()
        os.fsync(out.fileno())


def _cpu_state(module_or_state) -> dict[str, torch.Tensor]:
    state = (
        module_or_state if isinstance(module_or_state, Mapping) else module_or_state.state_dict()
    )
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        "data_order": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(states["python"]))
    generator.set_state(states["data_order"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tuples(value):
    """random.setstate wants tuples where a checkpoint round trip may give lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _seeded(seed: int):
    """The python, numpy and torch (CPU) RNGs seeded with `seed` inside, as they were after."""
    python, numpy, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(torch_state)


class _SeededOrder(Sampler):
    """Each epoch, the items in a shuffled order, each with a seed of its own, both drawn from
    `generator` (the checkpointed data-order RNG)."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        seeds = torch.randint(2**31, (self.n,), generator=self.generator).tolist()
        return iter(zip(seeds, order, strict=True))


class _SeededItems(Dataset):
    """`dataset[index]` read under `_seeded(seed)` for a `(seed, index)` key: the same item in
    the main process or in any DataLoader worker, whatever was read before."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        seed, index = key
        with _seeded(seed):
            return self.dataset[index]


def _amp_plan(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler). Never autocast off CUDA."""
    if device.type != "cuda" or config.amp == "off":
        return None, False
    if config.amp == "bf16" or (config.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


def _config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in _RESUMABLE_FIELDS}


class _Trainer:
    def __init__(self, model, train, validation, config, checkpoint_dir, prepare, on_epoch_end):
        self.model, self.train_data, self.val_data = model, train, validation
        self.config, self.prepare, self.on_epoch_end = config, prepare, on_epoch_end
        self.dir = Path(checkpoint_dir)
        self.device = torch.device(config.device)
        self.autocast_dtype, use_scaler = _amp_plan(config, self.device)
        if len(train) == 0 or (validation is not None and len(validation) == 0):
            raise ValueError(f"empty data: {len(train)} training, {len(validation)} selection")

        seed_everything(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        cuda = self.device.type == "cuda"
        loader = dict(batch_size=config.batch_size, num_workers=config.num_workers, pin_memory=cuda)
        if config.num_workers > 0:
            loader["persistent_workers"] = True  # keep the datasets' in-memory caches
        self.train_loader = DataLoader(
            _SeededItems(train),
            sampler=_SeededOrder(len(train), self.generator),
            # seeds the workers' own RNGs, which no item uses: not the data-order generator,
            # whose draws a resume must repeat
            generator=torch.Generator().manual_seed(config.seed),
            **loader,
        )
        self.monitor = "last_epoch"
        if validation is not None:
            self.val_loader = DataLoader(
                validation, shuffle=False, generator=torch.Generator().manual_seed(0), **loader
            )
            self.val_labels = dataset_labels(validation)
            two_classes = len(np.unique(self.val_labels > 0.5)) == 2
            self.monitor = "val_roc_auc" if two_classes else "neg_val_loss"

        self.pos_weight = positive_weight(dataset_labels(train)) if config.class_weights else None
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=self.device)
        self.criterion = nn.BCEWithLogitsLoss(pos_weight=pw)
        self.val_criterion = nn.BCEWithLogitsLoss(reduction="sum")

        self.model.to(self.device)
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
        n_batches = len(self.train_loader)
        self.steps_per_epoch = math.ceil(n_batches / config.grad_accumulation)
        total = self.steps_per_epoch * config.epochs
        warmup = config.warmup_steps
        if warmup is None:
            warmup = round(config.warmup_epochs * self.steps_per_epoch)
        self.warmup_steps = min(max(0, int(warmup)), total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(total, self.warmup_steps, config.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"epoch": 0, "score": -math.inf, "metrics": {}}
        self.bad_epochs = 0
        self.stopped = False
        self.finished = False

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self, finished: bool = False) -> dict[str, Any]:
        """What `last.pt` holds: everything to resume from, or once `finished` what the result
        needs besides the kept weights, which are best.pt's (no weights, no optimizer state)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": _config_fingerprint(self.config),
            "epoch": self.epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "history": self.history,
            "pos_weight": self.pos_weight,
        }
        if finished:
            best = {k: v for k, v in self.best.items() if k != "state"}
            return {**state, "best": best, "finished": True}
        return {
            **state,
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": _rng_states(self.generator),
        }

    def resume(self) -> int:
        """Load `last.pt` if there is one; the epoch it ends (0 for a fresh run)."""
        path = self.dir / LAST
        if not path.exists():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {state.get('format')}, not supported")
        saved, now = state["config"], _config_fingerprint(self.config)
        if saved != now:
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(
                f"{path} was written with another training config ({', '.join(changed)} differ):"
                " use a new checkpoint directory or the same config"
            )
        self.epoch, self.history = state["epoch"], state["history"]
        self.best, self.bad_epochs, self.stopped = (
            state["best"],
            state["bad_epochs"],
            state["stopped"],
        )
        self.finished = state.get("finished", False)
        if self.finished:
            kept = torch.load(self.dir / BEST, map_location="cpu", weights_only=True)
            self.best["state"] = kept["state"]
            return self.epoch
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"], self.generator)
        return self.epoch

    # -- one epoch -----------------------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def _to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        moved = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        moved[LABEL] = moved[LABEL].float().reshape(-1)
        return self.prepare(moved) if self.prepare is not None else moved

    def _optimizer_step(self) -> tuple[bool, float]:
        """Unscale, measure and clip the gradient, step unless it is non-finite; the scheduler
        steps either way (the schedule follows optimizer step attempts)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = float(nn.utils.get_total_norm(grads)) if grads else 0.0
        finite = math.isfinite(norm)
        if finite and self.config.clip_grad_norm:
            nn.utils.clip_grads_with_norm_(
                [p for p in self.model.parameters() if p.grad is not None],
                self.config.clip_grad_norm,
                torch.tensor(norm),
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan
            self.scaler.update()
        elif finite:
            self.optimizer.step()
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()" after a skip
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return finite, norm

    def train_epoch(self) -> dict[str, float]:
        cfg, model = self.config, self.model
        model.train()
        n, group = len(self.train_data), cfg.batch_size * cfg.grad_accumulation
        seen = micro = skipped = steps = 0
        loss_sum, loss_n, wait, norm_max = 0.0, 0, 0.0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        batches = iter(self.train_loader)
        while True:
            t = time.perf_counter()
            try:
                raw = next(batches)
            except StopIteration:
                break
            wait += time.perf_counter() - t
            batch = self._to_device(raw)
            labels = batch[LABEL]
            size = len(labels)
            # Each micro-batch's mean loss is weighted by its share of its accumulation group,
            # so N micro-batches of b give the gradient of one batch of N*b (also the last,
            # shorter group).
            group_size = min(group, n - (seen // group) * group)
            with self._autocast():
                logits = call_model(model, batch, cfg.input_keys)
            loss = self.criterion(logits.float(), labels)
            scaled = loss * (size / group_size)
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            value = float(loss.detach())
            if math.isfinite(value):
                loss_sum, loss_n = loss_sum + value * size, loss_n + size
            seen, micro = seen + size, micro + 1
            if micro == cfg.grad_accumulation or seen >= n:
                applied, norm = self._optimizer_step()
                steps, micro = steps + 1, 0
                skipped += not applied
                if applied:
                    norm_max = max(norm_max, norm)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        return {
            "train_loss": loss_sum / loss_n if loss_n else math.nan,
            "train_seconds": seconds,
            "data_wait_share": wait / seconds if seconds > 0 else 0.0,
            "clips_per_s": seen / seconds if seconds > 0 else 0.0,
            "skipped_steps": skipped,
            "optimizer_steps": steps,
            "grad_norm_max": norm_max,
            "lr": float(self.scheduler.get_last_lr()[0]),
        }

    @torch.no_grad()
    def logits(self, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's float32 logits and the labels of every item of `loader`, on the CPU."""
        self.model.eval()
        logits, labels = [], []
        for raw in loader:
            batch = self._to_device(raw)
            with self._autocast():
                logits.append(call_model(self.model, batch, self.config.input_keys).float().cpu())
            labels.append(batch[LABEL].cpu())
        return torch.cat(logits), torch.cat(labels)

    def validate(self) -> tuple[dict[str, float], np.ndarray]:
        """Loss and ROC-AUC on the selection set (NaN without one), and its P(fake)."""
        if self.monitor == "last_epoch":
            return {"val_loss": math.nan, "val_roc_auc": math.nan}, np.empty(0)
        logits, targets = self.logits(self.val_loader)
        loss_sum = float(self.val_criterion(logits, targets))
        probs = torch.sigmoid(logits).numpy().astype(np.float64)
        labels = self.val_labels > 0.5
        auc = math.nan
        if self.monitor == "val_roc_auc" and np.isfinite(probs).all():
            auc = float(roc_auc_score(labels, probs))
        return {"val_loss": loss_sum / len(probs), "val_roc_auc": auc}, probs

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        resumed = self.resume()
        while self.epoch < self.config.epochs and not self.stopped:
            start = time.perf_counter()
            metrics = {"epoch": self.epoch + 1, **self.train_epoch()}
            val_metrics, probs = self.validate()
            metrics.update(val_metrics, seconds=time.perf_counter() - start)
            metrics = {k: float(v) if k != "epoch" else int(v) for k, v in metrics.items()}
            self.epoch += 1
            self.history.append(metrics)
            score = {
                "val_roc_auc": metrics["val_roc_auc"],
                "neg_val_loss": -metrics["val_loss"],
                "last_epoch": float(self.epoch),
            }[self.monitor]
            if math.isfinite(score) and score > self.best["score"] + self.config.min_delta:
                self.best = {
                    "epoch": self.epoch,
                    "score": score,
                    "metrics": dict(metrics),
                    "state": _cpu_state(self.model),
                    "val_probabilities": torch.from_numpy(probs.copy()),
                }
                self.bad_epochs = 0
                best = {k: self.best[k] for k in ("epoch", "metrics", "state")}
                atomic_save({**best, "config": asdict(self.config)}, self.dir / BEST)
            else:
                self.bad_epochs += 1
            patience = self.config.patience
            self.stopped = patience is not None and self.bad_epochs >= patience
            atomic_save(self.checkpoint(), self.dir / LAST)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self.epoch, dict(metrics))
        if "state" not in self.best:
            raise RuntimeError("no epoch gave a finite validation score; nothing to keep")
        if not self.finished:  # best.pt holds the kept weights: drop what only resuming needs
            atomic_save(self.checkpoint(finished=True), self.dir / LAST)
            self.finished = True
        return self.result(resumed)

    def result(self, resumed: int) -> TrainResult:
        self.model.load_state_dict(self.best["state"])
        return TrainResult(
            history=copy.deepcopy(self.history),
            best_epoch=self.best["epoch"],
            best_metrics=dict(self.best["metrics"]),
            val_probabilities=self.best["val_probabilities"].numpy().copy(),
            skipped_steps=int(sum(h["skipped_steps"] for h in self.history)),
            best_checkpoint=self.dir / BEST,
            last_checkpoint=self.dir / LAST,
            stopped_early=self.stopped and self.epoch < self.config.epochs,
            pos_weight=self.pos_weight,
            resumed_from_epoch=resumed,
            monitor=self.monitor,
        )


def fit(
    model: nn.Module,
    train: Dataset,
    selection: Dataset | None,
    config: TrainConfig,
    checkpoint_dir: str | Path,
    *,
    prepare: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `model` on `train`, score `selection` after every epoch, and return the best
    epoch on it, or with no selection set train every epoch and keep the last (see the module
    docstring). Resumes from `checkpoint_dir/last.pt` when it exists
    (written with the same config, `device` and `num_workers` aside); a finished checkpoint
    returns its result without training. Seeds python, numpy and torch from `config.seed`.
    `on_epoch_end(epoch, metrics)` runs after each epoch's checkpoint is written (1-based epoch;
    the metrics of `TrainResult.history`); an exception from it stops training, and the next
    call resumes after that epoch."""
    trainer = _Trainer(model, train, selection, config, checkpoint_dir, prepare, on_epoch_end)
    return trainer.run()


def predict(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    prepare: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> np.ndarray:
    """P(fake) of every item of `dataset`, in order, from `model` as it is (eval mode, the
    device, batch size and autocast of `config`); the items' labels only give the batch size."""
    device = torch.device(config.device)
    model.to(device).eval()
    dtype, _ = _amp_plan(config, device)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False)
    autocast = contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype)
    probabilities = []
    with torch.no_grad():
        for raw in loader:
            batch = {k: v.to(device) for k, v in raw.items()}
            with autocast:
                logits = call_model(model, prepare(batch) if prepare else batch, config.input_keys)
            probabilities.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(probabilities).numpy().astype(np.float64)


def load_best(model: nn.Module, checkpoint: str | Path) -> dict[str, Any]:
    """Load a `best.pt` into `model`; its epoch, metrics and config."""
    state = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    model.load_state_dict(state["state"])
    return {k: state[k] for k in ("epoch", "metrics", "config")}
