"""The generic trainer, one feature at a time, on tiny models and tensors (CPU, one thread)."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Dataset

from fvc_dagster.lib.clips.store import write_clip
from fvc_dagster.lib.models import build_model, get_spec
from fvc_dagster.lib.training import trainer as trainer_module
from fvc_dagster.lib.training.clip_data import ClipDataset, normaliser
from fvc_dagster.lib.training.trainer import TrainConfig, _amp_plan, fit, load_best, lr_lambda

# Metrics that depend on the clock, not on the numbers.
TIMING = ("seconds", "train_seconds", "data_wait_share", "clips_per_s")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tensors(Dataset):
    """Items {"clip": (3, 4, 8, 8) float, "label"}: fakes are brighter, plus noise."""

    def __init__(self, n: int, n_fake: int | None = None, seed: int = 0, scale: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        n_fake = n // 2 if n_fake is None else n_fake
        self.labels = np.array([1.0] * n_fake + [0.0] * (n - n_fake), np.float32)
        self.x = torch.randn(n, 3, 4, 8, 8, generator=g) * scale
        self.x += torch.from_numpy(self.labels).view(-1, 1, 1, 1, 1) * 0.5 * scale

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"clip": self.x[i], "label": torch.tensor(self.labels[i])}


class Tiny(nn.Module):
    """Conv3d + ReLU + global mean + linear; optional dropout, no batchnorm."""

    def __init__(self, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4, 1)

    def forward(self, clip):
        return self.fc(self.drop(torch.relu(self.conv(clip)).mean((2, 3, 4))))


def config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=1e-2, weight_decay=1e-2, warmup_epochs=1, patience=None)
    return TrainConfig(**{**base, **overrides})


def numbers(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_resume_after_a_kill_ends_exactly_like_an_uninterrupted_run(tmp_path):
    train, val = Tensors(12, seed=1), Tensors(8, seed=2)
    cfg = config(grad_accumulation=2)
    whole = Tiny(dropout=0.3)
    uninterrupted = fit(whole, train, val, cfg, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_first(epoch, metrics):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(Tiny(dropout=0.3), train, val, cfg, tmp_path / "b", on_epoch_end=kill_after_first)
    resumed_model = Tiny(dropout=0.3, seed=99)  # other weights: the checkpoint must replace them
    torch.manual_seed(12345)  # and other global RNG state: the checkpoint restores it
    resumed = fit(resumed_model, train, val, cfg, tmp_path / "b")

    assert resumed.resumed_from_epoch == 1
    assert len(resumed.history) == 3
    assert numbers(resumed.history) == numbers(uninterrupted.history)
    assert resumed.best_epoch == uninterrupted.best_epoch
    assert_same_state(resumed_model, whole)
    np.testing.assert_array_equal(resumed.val_probabilities, uninterrupted.val_probabilities)
    kept = torch.load(tmp_path / "b" / "best.pt", weights_only=True)
    expected = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    for k, v in expected["state"].items():
        assert torch.equal(kept["state"][k], v), k


class NoisyTensors(Tensors):
    """`Tensors` read with noise from python's, numpy's and torch's global RNGs (as random
    crops and augmentations draw), and a DataLoader worker's RNGs are its own."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        noise = torch.rand(item["clip"].shape) + float(np.random.normal()) + random.random()
        return {**item, "clip": item["clip"] + 0.1 * noise}


def test_resume_with_dataloader_workers_ends_exactly_like_an_uninterrupted_run(tmp_path):
    train, val = NoisyTensors(12, seed=1), Tensors(8, seed=2)
    cfg = config(num_workers=2)
    whole = Tiny(dropout=0.3)
    uninterrupted = fit(whole, train, val, cfg, tmp_path / "a")

    def kill_after_first(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(Tiny(dropout=0.3), train, val, cfg, tmp_path / "b", on_epoch_end=kill_after_first)
    resumed_model = Tiny(dropout=0.3, seed=99)
    resumed = fit(resumed_model, train, val, cfg, tmp_path / "b")
    assert resumed.resumed_from_epoch == 1
    assert numbers(resumed.history) == numbers(uninterrupted.history)
    assert_same_state(resumed_model, whole)

    # and the workers change no number: the same run in the main process
    in_process = Tiny(dropout=0.3)
    main = fit(in_process, train, val, config(num_workers=0), tmp_path / "c")
    assert numbers(main.history) == numbers(uninterrupted.history)
    assert_same_state(in_process, whole)


def test_two_runs_with_one_seed_give_identical_metrics_and_weights(tmp_path):
    train, val = Tensors(12, seed=1), Tensors(8, seed=2)
    a, b = Tiny(dropout=0.3), Tiny(dropout=0.3)
    first = fit(a, train, val, config(epochs=2), tmp_path / "a")
    second = fit(b, train, val, config(epochs=2), tmp_path / "b")
    assert numbers(first.history) == numbers(second.history)
    assert_same_state(a, b)
    other = fit(Tiny(dropout=0.3), train, val, config(epochs=2, seed=7), tmp_path / "c")
    assert numbers(other.history) != numbers(first.history)


def test_a_finished_run_returns_its_result_without_training(tmp_path, monkeypatch):
    train, val = Tensors(8, seed=1), Tensors(8, seed=2)
    model = Tiny()
    first = fit(model, train, val, config(epochs=2), tmp_path)
    monkeypatch.setattr(trainer_module._Trainer, "train_epoch", lambda self: 1 / 0)
    again_model = Tiny(seed=5)
    again = fit(again_model, train, val, config(epochs=2), tmp_path)
    assert again.history == first.history and again.best_epoch == first.best_epoch
    assert_same_state(again_model, model)


def test_a_finished_run_keeps_its_kept_weights_once_and_no_optimizer_state(tmp_path):
    model = Tiny(dropout=0.3)
    result = fit(model, Tensors(8, seed=1), Tensors(8, seed=2), config(epochs=2), tmp_path)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["finished"] and last["epoch"] == 2
    assert not {"model", "optimizer", "scheduler", "scaler", "rng"} & set(last)
    assert "state" not in last["best"] and last["history"] == result.history
    kept = torch.load(tmp_path / "best.pt", weights_only=True)["state"]
    assert all(torch.equal(kept[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "last.pt").stat().st_size < (tmp_path / "best.pt").stat().st_size


def test_resuming_with_another_config_is_refused(tmp_path):
    train, val = Tensors(8, seed=1), Tensors(8, seed=2)
    fit(Tiny(), train, val, config(epochs=1), tmp_path)
    with pytest.raises(ValueError, match="lr differ"):
        fit(Tiny(), train, val, config(epochs=1, lr=0.5), tmp_path)


class Scripted(nn.Module):
    """Trains a real linear layer, but its validation scores follow a script, one row per epoch,
    indexed by the item number stored in the clip's first value."""

    def __init__(self, script):
        super().__init__()
        self.fc = nn.Linear(1, 1)
        self.script = torch.tensor(script, dtype=torch.float32)
        self.validations = 0

    def train(self, mode: bool = True):
        self.validations += not mode
        return super().train(mode)

    def forward(self, clip):
        if self.training:
            return self.fc(clip.mean((1, 2, 3, 4))[:, None])
        scores = self.script[self.validations - 1][clip[:, 0, 0, 0, 0].long()]
        return scores[:, None] + 0 * self.fc.bias


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(tmp_path):
    # validation labels 1, 1, 0, 0 (Tensors puts fakes first); AUCs 0.75, 1.0, 0.5, 0.75, ...
    script = [[0.2, 0.4, 0.1, 0.3], [1, 1, 0, 0], [1, 0, 0, 1], [0.2, 0.4, 0.1, 0.3]] + [
        [1, 1, 0, 0]
    ] * 6
    val = Tensors(4, seed=2)
    val.x[:, 0, 0, 0, 0] = torch.arange(4.0)
    model = Scripted(script)
    snapshots = {}

    def snapshot(epoch, metrics):
        snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit(
        model, Tensors(8), val, config(epochs=10, patience=2), tmp_path, on_epoch_end=snapshot
    )
    assert [h["val_roc_auc"] for h in result.history] == [0.75, 1.0, 0.5, 0.75]
    assert result.stopped_early and result.best_epoch == 2
    assert result.best_metrics["val_roc_auc"] == 1.0
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k])
    assert not torch.equal(snapshots[2]["fc.weight"], snapshots[4]["fc.weight"])
    np.testing.assert_allclose(result.val_probabilities, torch.sigmoid(torch.tensor(script[1])))
    best = Scripted(script)
    assert load_best(best, result.best_checkpoint)["epoch"] == 2
    assert torch.equal(best.fc.weight, snapshots[2]["fc.weight"])


@pytest.mark.parametrize("n", [8, 10])  # 10: the last accumulation group is shorter
def test_accumulating_n_micro_batches_equals_one_batch_n_times_larger(tmp_path, n):
    train, val = Tensors(n, seed=1), Tensors(4, seed=2)
    big, small = Tiny(), Tiny()
    cfg = dict(epochs=1, clip_grad_norm=None, warmup_epochs=0)
    fit(big, train, val, config(batch_size=8, grad_accumulation=1, **cfg), tmp_path / "a")
    r = fit(small, train, val, config(batch_size=4, grad_accumulation=2, **cfg), tmp_path / "b")
    assert r.history[0]["optimizer_steps"] == math.ceil(n / 8)
    moved = False
    for (name, p), q in zip(big.named_parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
        moved |= not torch.equal(p, Tiny().get_parameter(name))
    assert moved


def test_gradients_are_clipped_to_the_global_norm_before_each_step(tmp_path):
    seen = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(nn.utils.get_total_norm(grads)))

    handle = register_optimizer_step_pre_hook(record)
    try:
        train = Tensors(8, seed=1, scale=100.0)
        result = fit(Tiny(), train, Tensors(4, seed=2), config(epochs=1, clip_grad_norm=0.01),
                     tmp_path)  # fmt: skip
    finally:
        handle.remove()
    assert len(seen) == 2
    assert result.history[0]["grad_norm_max"] > 1.0  # the raw gradient is large...
    assert max(seen) <= 0.01 * (1 + 1e-5)  # ...the applied one is bounded


def test_the_loss_is_weighted_by_n_negative_over_n_positive(tmp_path):
    train, val = Tensors(8, n_fake=2, seed=1), Tensors(4, seed=2)
    model = Tiny()
    with torch.no_grad():
        logits = model(train.x)[:, 0]
    labels = torch.from_numpy(train.labels)
    weighted = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))(logits, labels).item()
    plain = nn.BCEWithLogitsLoss()(logits, labels).item()
    assert abs(weighted - plain) > 0.1

    result = fit(model, train, val, config(epochs=1, lr=0.0), tmp_path / "a")
    assert result.pos_weight == 3.0
    assert result.history[0]["train_loss"] == pytest.approx(weighted, abs=1e-6)
    unweighted = fit(Tiny(), train, val, config(epochs=1, lr=0.0, class_weights=False),
                     tmp_path / "b")  # fmt: skip
    assert unweighted.pos_weight is None
    assert unweighted.history[0]["train_loss"] == pytest.approx(plain, abs=1e-6)


def test_a_non_finite_gradient_is_never_applied_and_is_counted(tmp_path):
    train = Tensors(8, seed=1)
    train.x[3] = float("nan")  # one planted item: its batch's loss and gradients are NaN
    model = Tiny()
    result = fit(model, train, Tensors(4, seed=2), config(epochs=2, batch_size=2), tmp_path)
    assert [h["skipped_steps"] for h in result.history] == [1, 1]
    assert [h["optimizer_steps"] for h in result.history] == [4, 4]
    assert result.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(h["train_loss"]) for h in result.history)


def test_a_checkpoint_is_written_atomically_after_every_epoch(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(trainer_module.os, "replace", spy)
    epochs_on_disk = []

    def check(epoch, metrics):
        state = torch.load(tmp_path / "last.pt", weights_only=True)
        epochs_on_disk.append(state["epoch"])
        assert state["history"][-1] == metrics
        assert {"model", "optimizer", "scheduler", "scaler", "best", "bad_epochs", "rng"} <= set(
            state
        )
        assert {"torch", "numpy", "python", "data_order"} <= set(state["rng"])

    fit(Tiny(), Tensors(8), Tensors(4, seed=2), config(epochs=3), tmp_path, on_epoch_end=check)
    assert epochs_on_disk == [1, 2, 3]
    lasts = [(s, d) for s, d in replaced if d.name == "last.pt"]
    assert len(lasts) == 4  # one per epoch, then the finished run's
    assert all(s.parent == tmp_path and s.name.startswith(".last.pt.") for s, _ in lasts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]

    # a save that dies half way leaves the previous checkpoint whole and no temp file
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(trainer_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer_module.atomic_save({"epoch": 99}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_warmup_then_cosine_schedule_per_optimizer_step(tmp_path):
    f = lr_lambda(total_steps=10, warmup_steps=2)
    assert [f(0), f(1), f(2)] == [0.5, 1.0, 1.0]
    assert f(9) == pytest.approx(0.0, abs=1e-12)
    assert 0 < f(5) < 1
    result = fit(Tiny(), Tensors(8), Tensors(4, seed=2), config(epochs=2, warmup_epochs=1),
                 tmp_path)  # fmt: skip
    # 2 steps per epoch: after epoch 1 the warmup is over (lr = peak); the last step reaches 0
    assert result.history[0]["lr"] == pytest.approx(1e-2)
    assert result.history[1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_cpu_never_autocasts():
    cpu = torch.device("cpu")
    for amp in ("auto", "bf16", "fp16", "off"):
        assert _amp_plan(TrainConfig(amp=amp), cpu) == (None, False)


class WithBox(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 + 4, 1)

    def forward(self, clip, box):
        return self.fc(torch.cat([clip.mean((2, 3, 4)), box / 8], 1))


class BoxTensors(Tensors):
    def __getitem__(self, i):
        return {**super().__getitem__(i), "box": torch.tensor([0.0, 2.0, 8.0, 4.0])}


def test_models_with_extra_inputs_get_the_batch_keys_in_order(tmp_path):
    cfg = config(epochs=1, input_keys=("clip", "box"))
    result = fit(WithBox(), BoxTensors(8), BoxTensors(4, seed=2), cfg, tmp_path / "a")
    assert len(result.val_probabilities) == 4
    with pytest.raises(KeyError, match="box"):
        fit(WithBox(), Tensors(8), Tensors(4, seed=2), cfg, tmp_path / "b")


def test_a_registry_network_trains_end_to_end_on_stored_clips(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for n in range(8):
        frames = np.zeros((8, 64, 64, 3), np.uint8)
        frames[:, 16:48] = rng.integers(0, 120, (8, 32, 64, 3)) + 100 * (n % 2)
        path = tmp_path / "scaled" / f"v{n}" / f"c{n}.avi"
        write_clip(frames, path)
        rows.append(dict(path=str(path), label="fake" if n % 2 else "real", content_x=0,
                         content_y=16, scaled_width=64, scaled_height=32))  # fmt: skip
    data = ClipDataset(rows, frames=4, pixels=32)
    torch.manual_seed(0)
    model = build_model("x3d", dropout=0.0)
    seen = []
    result = fit(
        model,
        data,
        ClipDataset(rows[:4], frames=4, pixels=32),
        config(epochs=2, lr=1e-3),
        tmp_path / "ckpt",
        prepare=normaliser(get_spec("x3d").normalisation),
        on_epoch_end=lambda epoch, metrics: seen.append(epoch),
    )
    assert seen == [1, 2] and len(result.history) == 2
    assert result.val_probabilities.shape == (4,)
    assert 0 <= result.history[-1]["data_wait_share"] < 1
    assert result.best_checkpoint.exists()


def test_without_a_selection_set_every_epoch_runs_and_the_last_is_kept(tmp_path):
    model = Tiny()
    result = fit(model, Tensors(8), None, config(epochs=3, patience=1), tmp_path / "a")
    assert result.best_epoch == 3 and not result.stopped_early and len(result.history) == 3
    assert result.monitor == "last_epoch" and result.val_probabilities.size == 0
    assert all(math.isnan(h["val_roc_auc"]) for h in result.history)
    kept = torch.load(result.best_checkpoint, weights_only=True)
    assert kept["epoch"] == 3
    assert all(torch.equal(v, kept["state"][k]) for k, v in model.state_dict().items())


def test_predict_scores_with_the_kept_weights_and_never_reads_labels(tmp_path):
    held_out = Tensors(6, seed=3)
    model = Tiny()
    result = fit(model, Tensors(8), held_out, config(epochs=2), tmp_path)
    scored = trainer_module.predict(model, held_out, config())
    np.testing.assert_allclose(scored, result.val_probabilities, rtol=1e-6)
    flipped = [dict(item, label=1 - item["label"]) for item in map(held_out.__getitem__, range(6))]
    np.testing.assert_array_equal(trainer_module.predict(model, flipped, config()), scored)
