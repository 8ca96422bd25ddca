"""What the video networks' input does to their scores: scaled clips vs native windows.

`python -m bench.network_input` generates a corpus (`generate_corpus`), runs the pipeline's
library functions on it without Dagster (ingest, `make_clips`, `scale_clip` with the letterbox,
`assign_folds`) into a work folder that later runs reuse, then trains `naive_cnn` from random
weights on CPU, fold by fold, through the network asset's own functions (`plan_network`,
`fold_clips`, `train_network`), under each setting asked for:

- source: ``scaled`` (the 256-px letterboxed clip, content box resized to P) or ``native``
  (grid-aligned P-px windows of the lossless clip: random ones to train, the centre one to
  choose the epoch and to score);
- augmentations: which augmented clips train besides the originals (``none``, ``pixels``: those
  that resample or smooth no pixel, ``all``);
- epoch choice: ``fixed`` (the last of `epochs`) or ``inner_fold`` (chosen on the next fold's
  originals, early stopping), as the asset's config;
- labels: ``true``, or ``shuffled`` (cascade labels permuted, a chance control: the held-out
  fold is still scored against its true labels, and must stay inside the chance band).

Reported per setting: mean (sample std) and pooled held-out ROC-AUC over the folds with its
cascade bootstrap interval and chance band, the epochs kept, and the seconds of training per
fold. One torch thread, so the times are those of one core.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from fvc_dagster.lib.clips.augment import AUG_TYPES, PIXEL_KEEPING_AUGMENTATIONS
from fvc_dagster.lib.clips.scaling import letterbox
from fvc_dagster.lib.clips.video_clips import make_clips, scale_clip
from fvc_dagster.lib.evaluation.uncertainty import score_uncertainty
from fvc_dagster.lib.ingest.archives import DEFAULT_LABEL_MAP, ArchiveLimits, index_inbox
from fvc_dagster.lib.ingest.extraction import ingest_video
from fvc_dagster.lib.training.fold_data import assign_clips
from fvc_dagster.lib.training.folds import assign_folds
from fvc_dagster.lib.training.networks import (
    checkpoint_dir,
    fold_clips,
    plan_network,
    train_network,
)
from fvc_dagster.local import corpus

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "naive_cnn"
N_FOLDS = 5
K = 16  # frames per stored clip (the pipeline's default)
AUGMENTATION_SETS = {
    "none": (),
    "pixels": PIXEL_KEEPING_AUGMENTATIONS,
    "all": AUG_TYPES,
}


# ------------------------------------------------------------------------------ the corpus


def corpus_key(spec: corpus.CorpusSpec) -> str:
    """The spec and corpus.py's text: another generator gives another work folder."""
    source = Path(corpus.__file__).read_bytes()
    key = json.dumps(asdict(spec), sort_keys=True).encode() + source
    return hashlib.sha256(key).hexdigest()[:12]


def prepare(work: Path, spec: corpus.CorpusSpec) -> dict[str, pd.DataFrame]:
    """Source videos, clips, scaled clips and fold assignments of the corpus `spec` gives,
    made by the pipeline's library functions (kept in `work` and reused)."""
    tables = {name: work / f"{name}.parquet" for name in ("sources", "clips", "scaled", "folds")}
    if all(p.exists() for p in tables.values()):
        return {name: pd.read_parquet(p) for name, p in tables.items()}
    inbox = work / "inbox"
    print(f"generating {spec.n_videos} videos into {inbox}", flush=True)
    corpus.generate_corpus(inbox, spec, progress=True)
    index = index_inbox(inbox)
    sources, clips, scaled = [], [], []
    for video_id in tqdm(sorted(index.videos), desc="ingest, clips, letterbox", unit="video"):
        source = ingest_video(
            index, video_id, inbox, work / "videos", work / "quarantine", None,
            ArchiveLimits(), DEFAULT_LABEL_MAP,
        )  # fmt: skip
        sources.append(source)
        rows, _ = make_clips(video_id, Path(source["path"]), K, work / "clips" / video_id)
        clips += rows
        for row in rows:
            scaled.append(scale_clip(row, letterbox, work / "scaled" / video_id, "letterbox")[0])
    sources_df = pd.DataFrame(sources)
    out = {
        "sources": sources_df,
        "clips": pd.DataFrame(clips),
        "scaled": pd.DataFrame(scaled),
        "folds": assign_folds(sources_df, N_FOLDS),
    }
    for name, table in out.items():
        table.to_parquet(tables[name])
    return out


# ------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class Setting:
    """One way to train naive_cnn on every fold (the network asset's config fields)."""

    source: str  # "scaled" or "native"
    pixels: int
    frames: int
    augmentations: str  # a key of AUGMENTATION_SETS
    epochs: int
    lr: float
    batch_size: int
    epoch_choice: str  # "fixed" (the last of `epochs`) or "inner_fold" (chosen, early stop)
    labels: str = "true"  # or "shuffled": permuted between cascades (a chance control)
    train_windows: str = "centre"  # native windows that train: "centre" or "random"

    def describe(self) -> str:
        windows = f" ({self.train_windows} windows)" if self.source == "native" else ""
        return (
            f"{self.source}{windows} {self.frames}x{self.pixels}px, aug {self.augmentations}, "
            f"{self.epochs} ep ({self.epoch_choice}), lr {self.lr:g}, batch {self.batch_size}, "
            f"labels {self.labels}"
        )


def training_clips(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The `training_clips` asset's rows for the corpus (`assign_clips` over its folds)."""
    clips = tables["clips"][["video_id", "clip_id", "aug_index"]]
    return assign_clips(clips, tables["folds"], N_FOLDS)


def shuffled_labels(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`rows` with every cascade's label swapped for another cascade's (one permutation)."""
    cascades = rows.drop_duplicates("dup_group").set_index("dup_group")["label"]
    permuted = dict(zip(cascades.index, np.random.default_rng(seed).permutation(cascades.values),
                        strict=True))  # fmt: skip
    return rows.assign(label=rows["dup_group"].map(permuted))


def run_setting(setting: Setting, tables: dict[str, pd.DataFrame], work: Path) -> dict:
    """Every fold of `setting` through the network asset's own functions (`plan_network`,
    `fold_clips`, `train_network`): trained on the fold's training clips (with shuffled labels
    in the control), scored once on its held-out originals against their true labels."""
    clips = training_clips(tables)
    cascade_of = tables["folds"].set_index("video_id")["dup_group"]
    trains_on = clips.assign(dup_group=clips["video_id"].map(cascade_of))
    if setting.labels == "shuffled":
        trains_on = shuffled_labels(trains_on, seed=1000)
    files = tables["clips"] if setting.source == "native" else tables["scaled"]
    plans = {
        fold: plan_network(
            MODEL,
            fold,
            weights="random",
            device="cpu",
            frames=setting.frames,
            pixels=setting.pixels,
            epochs=setting.epochs,
            batch_size=setting.batch_size,
            lr=setting.lr,
            epoch_choice=setting.epoch_choice,
            source=setting.source,
            train_windows=setting.train_windows,
            augmentations=AUGMENTATION_SETS[setting.augmentations],
        )  # fmt: skip
        for fold in range(N_FOLDS)
    }
    data = fold_clips(trains_on.drop(columns="dup_group"), files, range(N_FOLDS), plans[0],
                      work / "flow")  # fmt: skip
    true_label = clips.drop_duplicates("video_id").set_index("video_id")["label"]
    folds = []
    with tempfile.TemporaryDirectory(prefix="fvc-bench-netinput-") as checkpoints:
        for fold in tqdm(range(N_FOLDS), desc=setting.describe(), unit="fold", leave=False):
            start = time.perf_counter()
            fold_data = data[fold]
            result, _, probabilities = train_network(
                plans[fold], fold_data, checkpoint_dir(Path(checkpoints), plans[fold], fold_data)
            )
            held = fold_data.held_out_rows
            labels = (held["video_id"].map(true_label) == "fake").to_numpy(float)
            folds.append({
                "fold": fold, "train_clips": len(fold_data.train),
                "seconds": time.perf_counter() - start, "best_epoch": result.best_epoch,
                "roc_auc": roc_auc_score(labels, probabilities), "labels": labels,
                "probabilities": probabilities, "cascades": held["video_id"].map(cascade_of),
            })  # fmt: skip
            print(f"  fold {fold}: ROC-AUC {folds[-1]['roc_auc']:.3f}, epoch "
                  f"{result.best_epoch}, {folds[-1]['seconds']:.1f} s", flush=True)  # fmt: skip
    aucs = np.array([f["roc_auc"] for f in folds])
    pooled = score_uncertainty(
        np.concatenate([f["labels"] for f in folds]),
        np.concatenate([f["probabilities"] for f in folds]),
        np.concatenate([f["cascades"] for f in folds]),
    )
    return {
        "setting": asdict(setting),
        "mean_roc_auc": float(aucs.mean()),
        "std_roc_auc": float(aucs.std(ddof=1)),
        "fold_roc_auc": aucs.round(3).tolist(),
        "best_epochs": [int(f["best_epoch"]) for f in folds],
        "pooled_roc_auc": pooled.roc_auc,
        "pooled_low": pooled.low,
        "pooled_high": pooled.high,
        "chance_band": pooled.band,
        "seconds_per_fold": float(np.mean([f["seconds"] for f in folds])),
        "seconds_total": float(np.sum([f["seconds"] for f in folds])),
        "train_clips_per_fold": float(np.mean([f["train_clips"] for f in folds])),
    }


# ------------------------------------------------------------------------------ report

HEADER = """# Network input benchmark

`python -m bench.network_input` (see its docstring): naive_cnn from random weights, trained on
CPU on every fold through the network asset's functions, fed either the scaled clips (256-px
letterbox, content box resized to P with INTER_AREA) or native P-px windows of the lossless
clips on the 8x8 grid (the centre window to score and, by default, to train).
`mean ± std`: held-out ROC-AUC over the 5 folds (sample std); `pooled`: ROC-AUC of all
held-out originals together, with its 95% cascade bootstrap interval; `chance`: the 95th
percentile of the pooled ROC-AUC under labels permuted between cascades
(`lib/evaluation/uncertainty`); `epochs kept`: per fold; `s/fold`: seconds of training per
fold (one torch thread). `shuffled` labels: every cascade's label permuted before training (a
control; it must stay inside the chance band).
"""


def git(*args: str) -> str:
    run = subprocess.run(["git", *args], capture_output=True, text=True, cwd=RESULTS.parent)
    return run.stdout.strip()


def context(spec: corpus.CorpusSpec, threads: int) -> list[str]:
    """Date, commit, corpus and machine lines of a section."""
    commit = git("rev-parse", "--short", "HEAD")
    dirty = " with uncommitted changes" if git("status", "--porcelain") else ""
    corpus_file = Path(corpus.__file__)
    corpus_state = (
        "as committed"
        if not git("status", "--porcelain", str(corpus_file))
        else ("modified in the working tree")
    )
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    digest = hashlib.sha256(corpus_file.read_bytes()).hexdigest()[:12]
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- git commit: {commit}{dirty}",
        f"- corpus: `generate_corpus` with {spec}; corpus.py sha256 {digest} ({corpus_state})",
        f"- machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {threads} "
        f"thread(s), load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- command: `python -m bench.network_input {' '.join(sys.argv[1:])}`",
    ]


def table(results: list[dict]) -> list[str]:
    lines = [
        "| source | T x P | augmentations | epochs | lr | batch | labels | train clips/fold | "
        "mean ± std | folds | epochs kept | pooled [95% CI] | chance | s/fold |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["setting"]
        windows = f" ({s['train_windows']} windows)" if s["source"] == "native" else ""
        lines.append(
            f"| {s['source']}{windows} | {s['frames']} x {s['pixels']} | {s['augmentations']} | "
            f"{s['epochs']} ({s['epoch_choice']}) | {s['lr']:g} | {s['batch_size']} | "
            f"{s['labels']} | {r['train_clips_per_fold']:.0f} | "
            f"{r['mean_roc_auc']:.3f} ± {r['std_roc_auc']:.3f} | "
            f"{' '.join(f'{a:.2f}' for a in r['fold_roc_auc'])} | "
            f"{' '.join(str(e) for e in r['best_epochs'])} | "
            f"{r['pooled_roc_auc']:.3f} [{r['pooled_low']:.2f}, {r['pooled_high']:.2f}] | "
            f"{r['chance_band']:.2f} | {r['seconds_per_fold']:.1f} |"
        )
    return lines


def write_section(path: Path, title: str, lines: list[str]) -> None:
    """Replace the section `## title` of the report (or add it), keeping the others."""
    text = path.read_text() if path.exists() else HEADER
    parts = text.split("\n## ")
    body = "\n".join([title, "", *lines]).rstrip() + "\n"
    kept = [part for part in parts[1:] if part.split("\n", 1)[0] != title]
    out = "\n## ".join([HEADER.rstrip() + "\n", *sorted([*kept, body], key=_order)])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out)
    os.replace(tmp, path)


def _order(section: str) -> int:
    title = section.split("\n", 1)[0]
    return SECTIONS.index(title) if title in SECTIONS else len(SECTIONS)


SECTIONS = ["Input and augmentations", "Settings search", "Recommended settings", "Runs"]


def settings(args: argparse.Namespace) -> list[Setting]:
    """The cartesian product of the comma-separated options (train crops for native only)."""

    def split(value: str, kind=str) -> list:
        return [kind(v) for v in value.split(",")]

    out = []
    for values in itertools.product(
        split(args.sources), split(args.pixels, int), split(args.frames, int),
        split(args.augmentations), split(args.epochs, int), split(args.lr, float),
        split(args.batch, int), split(args.epoch_choice), split(args.labels),
        split(args.train_windows),
    ):  # fmt: skip
        setting = Setting(*values)
        if setting.source == "scaled":
            setting = replace(setting, train_windows="centre")
        if setting.augmentations not in AUGMENTATION_SETS:
            raise SystemExit(f"augmentations: one of {', '.join(AUGMENTATION_SETS)}")
        if setting not in out:
            out.append(setting)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Defaults: the demo's setting (`DEMO_NETWORK_CONFIGS`); `--labels true,shuffled` adds the
    # chance control. Comma-separated values give every combination.
    parser.add_argument("--sources", default="native", help="native, scaled or both")
    parser.add_argument("--pixels", default="112")
    parser.add_argument("--frames", default="1")
    parser.add_argument("--augmentations", default="none", help="none, pixels, all")
    parser.add_argument("--epochs", default="100")
    parser.add_argument("--lr", default="1e-3")
    parser.add_argument("--batch", default="8")
    parser.add_argument("--epoch-choice", default="fixed", help="fixed, inner_fold or both")
    parser.add_argument("--train-windows", default="centre", help="native: centre, random or both")
    parser.add_argument("--labels", default="true,shuffled", help="true, shuffled or both")
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fvc-netbench")
    parser.add_argument("--section", default="Runs", help=f"report section ({', '.join(SECTIONS)})")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the report")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    spec = corpus.CorpusSpec(n_videos=args.videos, seed=args.seed)
    lines = context(spec, args.threads)
    tables = prepare(args.work / f"corpus-{corpus_key(spec)}", spec)
    results = []
    todo = settings(args)
    for n, setting in enumerate(todo, 1):
        print(f"[{n}/{len(todo)}] {setting.describe()}", flush=True)
        results.append(run_setting(setting, tables, args.work))
        r = results[-1]
        print(f"  mean ROC-AUC {r['mean_roc_auc']:.3f} ± {r['std_roc_auc']:.3f}, pooled "
              f"{r['pooled_roc_auc']:.3f}, {r['seconds_total']:.0f} s", flush=True)  # fmt: skip
        print(json.dumps(r), flush=True)
    report = [*lines, "", *table(results)]
    print("\n".join(report))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_section(RESULTS / "network_input.md", args.section, report)


if __name__ == "__main__":
    main()
