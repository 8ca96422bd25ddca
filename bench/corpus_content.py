"""Can the synthetic corpus's labels be read from its content? The old generator against the
working tree's, on the demo corpus of each seed.

Old (corpus.py at `OLD_COMMIT`): fakes are two-scene blends and reals single scenes. New: every
cascade is a host scene with a donor region blended in; only the region's processing (resample,
JPEG on the 8x8 grid, unsharp mask) tells a fake. Per generator and seed, the demo corpus
(`CorpusSpec(n_videos=60, n_archives=3, seed)`) is generated, ingested and cut into each video's
clips (the original and 10 augmented, 16 frames), letterboxed to 256 px, and measured with the
pipeline's library code (no Dagster), on the folds of `assign_folds` (grouped by cascade):

* the tabular baselines on the 15 handcrafted + 8 scaled features of the original clips (what
  they fit and score): mean ROC-AUC over the folds;
* content only: XGBoost on random-weight `pretrained_inception` (r3d_18 trunk) embeddings at
  4 frames x 32 px (the demo's `clip_embeddings` setting), fit as the demo fits it (every clip
  of the training videos) and on the original clips only, scored on the held-out original
  clips: pooled ROC-AUC and its 95% chance band (`lib.evaluation.uncertainty.chance_band`: labels
  permuted between cascades, 1000 times).

    python -m bench.corpus_content --seeds 0 1 2 3 4

writes bench/results/corpus_content.md.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pandas as pd
import torch

from bench.run import RESULTS, write_atomic
from fvc_dagster.lib.clips.scaling import letterbox
from fvc_dagster.lib.clips.video_clips import ORIGINAL, make_clips, scale_clip
from fvc_dagster.lib.evaluation.uncertainty import chance_band, pooled_roc_auc
from fvc_dagster.lib.features.forensic import HANDCRAFTED_FEATURES, SCALED_FEATURES
from fvc_dagster.lib.features.rows import clip_feature_row, codec_cues, scaled_feature_row
from fvc_dagster.lib.ingest.archives import DEFAULT_LABEL_MAP, ArchiveLimits, index_inbox
from fvc_dagster.lib.ingest.extraction import ingest_video
from fvc_dagster.lib.models import models_of
from fvc_dagster.lib.training.embeddings import (
    clip_embedders,
    embedding_fold,
    embedding_model,
    fit_embedding_model,
)
from fvc_dagster.lib.training.fold_data import POSITIVE, assign_clips, fold_data
from fvc_dagster.lib.training.folds import assign_folds
from fvc_dagster.lib.training.tabular import train_fold
from fvc_dagster.local import corpus

REPO = Path(__file__).resolve().parent.parent
OLD_COMMIT = "8d301d0e6eac447501b2e94f669eb3c8502a80eb"  # the last two-scene-blend generator
N_FOLDS, FOLD_SEED = 5, 0  # as cv_folds
K = 16  # frames per clip (ClipSampling's default)
BACKBONE = "pretrained_inception"
TABULAR = models_of("tabular")
EMBEDDING = {"weights": "random", "frames": 4, "pixels": 32, "batch_size": 32}  # the demo's
PERMUTATIONS = 1000
FEATURES = [*HANDCRAFTED_FEATURES, *SCALED_FEATURES]
BASELINE_FLOOR = 0.9


def old_generator(work: Path) -> ModuleType:
    """corpus.py at `OLD_COMMIT`, imported from a copy in `work`."""
    show = ["git", "show", f"{OLD_COMMIT}:fvc_dagster/local/corpus.py"]
    source = subprocess.run(show, cwd=REPO, check=True, capture_output=True, text=True).stdout
    path = work / "old_corpus.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def video_clips(inbox: Path, work: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Source rows, the original clips' feature rows (handcrafted and scaled side by side) and
    the scaled rows of every clip of every video in `inbox`, as the pipeline makes them."""
    index = index_inbox(inbox)
    sources, features, scaled = [], [], []
    for video_id in sorted(index.videos):
        source = ingest_video(
            index, video_id, inbox, work / "videos", work / "quarantine", None,
            ArchiveLimits(), DEFAULT_LABEL_MAP,
        )  # fmt: skip
        clips, _ = make_clips(video_id, Path(source["path"]), K, work / "clips" / video_id)
        for clip in clips:
            scaled_row, _ = scale_clip(clip, letterbox, work / "scaled" / video_id, "letterbox")
            scaled.append(scaled_row)
            if clip["aug_index"] == ORIGINAL:
                handcrafted = clip_feature_row(clip, codec_cues(source))
                stage4 = scaled_feature_row(scaled_row)
                features.append({**handcrafted, **{k: stage4[k] for k in SCALED_FEATURES}})
        sources.append(source)
    return pd.DataFrame(sources), pd.DataFrame(features), pd.DataFrame(scaled)


def content_only(
    assignments: pd.DataFrame, embeddings: pd.DataFrame, folds: pd.DataFrame
) -> dict[str, float]:
    """XGBoost on the embeddings per fold: pooled held-out ROC-AUC, its chance band, the mean
    of the folds' ROC-AUCs."""
    held_out, fold_aucs = [], []
    for k in range(N_FOLDS):
        fold = embedding_fold(assignments, embeddings, k)
        fit = fit_embedding_model(embedding_model(BACKBONE), fold)
        held_out.append(fold.validation.assign(p=fit.probabilities))
        fold_aucs.append(fit.scores["roc_auc"])
    pooled = pd.concat(held_out).merge(folds[["video_id", "dup_group"]], on="video_id")
    y = (pooled["label"] == POSITIVE).to_numpy(int)
    return {
        "roc_auc": pooled_roc_auc(y, pooled["p"]),
        "band": chance_band(y, pooled["p"], pooled["dup_group"], PERMUTATIONS),
        "fold_mean": float(np.mean(fold_aucs)),
    }


def measure(generator: ModuleType, seed: int, work: Path, tag: str) -> dict:
    """Generate the demo corpus of `seed` with `generator` and score it (module docstring)."""
    spec = generator.CorpusSpec(n_videos=60, n_archives=3, seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    generator.generate_corpus(work / "inbox", spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{tag}: generated {spec.n_videos} videos in {wall:.1f} s ({cpu:.1f} s CPU)", flush=True)

    sources, features, scaled = video_clips(work / "inbox", work)
    folds = assign_folds(sources, N_FOLDS, FOLD_SEED)
    assignments = assign_clips(scaled, folds, N_FOLDS)
    print(f"{tag}: {len(sources)} videos ingested, clipped, letterboxed, measured", flush=True)

    row = {"generator": tag.split()[0], "seed": seed, "generate_s": wall, "generate_cpu_s": cpu}
    for label in ("real", "fake"):
        of_label = folds[folds["label"] == label]
        row[f"cascades_{label}"] = of_label["dup_group"].nunique()
        row[f"videos_{label}"] = len(of_label)
    for model in TABULAR:
        aucs = [
            train_fold(model, fold_data(assignments, features, k, FEATURES)).scores["roc_auc"]
            for k in range(N_FOLDS)
        ]
        row[model] = float(np.mean(aucs))
    print(f"{tag}: baselines " + ", ".join(f"{m} {row[m]:.3f}" for m in TABULAR), flush=True)

    (embedder,) = clip_embedders([BACKBONE], **EMBEDDING)
    embeddings = scaled.assign(embedding=list(embedder.embed(scaled)))
    originals = assignments[assignments["aug_index"] == ORIGINAL]
    for name, rows in (("content", assignments), ("originals", originals)):
        for key, value in content_only(rows, embeddings, folds).items():
            row[f"{name}_{key}"] = value
    row["inside"] = 1 - row["content_band"] < row["content_roc_auc"] < row["content_band"]
    print(
        f"{tag}: content only (XGBoost on {BACKBONE} embeddings, every training clip) pooled "
        f"ROC-AUC {row['content_roc_auc']:.3f}, chance band {1 - row['content_band']:.3f}-"
        f"{row['content_band']:.3f}; on original clips only {row['originals_roc_auc']:.3f}",
        flush=True,
    )
    return row


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--", "fvc_dagster/local/corpus.py").strip()
    return git("rev-parse", "HEAD").strip() + (" (corpus.py modified)" if dirty else "")


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model or platform.processor()}, {os.cpu_count()} cores (load {load} at the end), "
        f"python {platform.python_version()}, torch {torch.__version__}"
    )


def _band(bands: pd.Series) -> list[str]:
    return [f"{1 - b:.3f}-{b:.3f}" for b in bands]


def report(table: pd.DataFrame, seeds: list[int]) -> str:
    shown = table.assign(
        cascades=table["cascades_real"].astype(str) + " / " + table["cascades_fake"].astype(str),
        videos=table["videos_real"].astype(str) + " / " + table["videos_fake"].astype(str),
        content_band=_band(table["content_band"]),
        inside=table["inside"].map({True: "yes", False: "no"}),
        originals_band=_band(table["originals_band"]),
    )[
        ["generator", "seed", "cascades", "videos", *TABULAR, "content_roc_auc",
         "content_band", "inside", "content_fold_mean", "originals_roc_auc", "originals_band",
         "generate_s", "generate_cpu_s"]
    ]  # fmt: skip
    new = table[table["generator"] == "new"]
    checks = [
        f"- new corpus, every baseline's mean ROC-AUC >= {BASELINE_FLOOR} on every seed: "
        + ("yes" if (new[list(TABULAR)] >= BASELINE_FLOOR).all().all() else "NO"),
        "- new corpus, content-only ROC-AUC inside its chance band on every seed: "
        + ("yes" if new["inside"].all() else "NO"),
    ]
    return "\n".join(
        [
            "# Corpus content: can a content-only model read the label?",
            "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- commit: {git_commit()}; old generator: corpus.py at {OLD_COMMIT[:10]}",
            f"- machine: {machine()}; torch, OpenCV: 1 thread",
            f"- command: `python -m bench.corpus_content --seeds {' '.join(map(str, seeds))}`",
            "",
            "Demo corpus per seed (`CorpusSpec(n_videos=60, n_archives=3, seed)`), the clips "
            f"({K} frames: original and 10 augmented) of each real/fake video, {N_FOLDS} folds "
            "of `assign_folds` (grouped by cascade). Cascades and videos: real / fake. "
            f"Baselines ({', '.join(TABULAR)}): mean ROC-AUC over the folds on the 15 "
            "handcrafted + 8 scaled features. `content_roc_auc`: XGBoost on random-weight "
            f"`{BACKBONE}` (r3d_18 trunk) embeddings at {EMBEDDING['frames']} frames x "
            f"{EMBEDDING['pixels']} px, fit on every clip of the training videos (as the "
            "demo), pooled over the held-out original clips; `content_band`: its mirror and "
            "its 95th percentile under labels permuted between cascades "
            f"({PERMUTATIONS} permutations); `inside`: strictly between the two; "
            "`content_fold_mean`: the mean of its five folds' ROC-AUCs (what the demo's "
            "comparison shows); `originals_*`: the same model fit on original clips only. "
            "`generate_s`: wall time to generate the corpus (`generate_cpu_s`: this process's "
            "CPU time; the machine was shared, so wall times are noisy).",
            "",
            shown.to_markdown(index=False, floatfmt=".3f"),
            "",
            *checks,
            "",
        ]
    )


def main(seeds: list[int]) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="corpus_content_") as tmp:
        generators = {"old": old_generator(Path(tmp)), "new": corpus}
        for seed in seeds:
            for name, generator in generators.items():
                work = Path(tmp) / f"{name}_{seed}"
                rows.append(measure(generator, seed, work, f"{name} seed {seed}"))
    text = report(pd.DataFrame(rows), seeds)
    write_atomic(RESULTS / "corpus_content.md", lambda p: p.write_text(text))
    print(text)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.corpus_content", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    main(parser.parse_args().seeds)
