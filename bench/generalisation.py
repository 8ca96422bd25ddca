"""Train on the default corpus, test on a shifted one: the generalisation table.

Runs `fvc demo` (the demo corpus of `--videos` videos; its baselines, naive_cnn and the
embedding model; the ensemble) in a fresh data root with a held-out test archive of
`--test-videos` videos of another seed, shifted along the `--shift` axes (`fvc generate
--shift`), and records `fvc.generalisation`, every model's cross-validated pooled ROC-AUC beside
its ROC-AUC on the test videos, with the commit and machine:

    python -m bench.generalisation --shift codec=mpeg4 --test-videos 24

writes bench/results/generalisation.md (the demo's own output in the data root's demo.log).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.corpus_content import machine
from bench.run import RESULTS, write_atomic
from fvc_dagster.lib.evaluation.generalisation import generalisation_markdown

REPO = Path(__file__).resolve().parents[1]


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    return git("rev-parse", "HEAD").strip() + (" (modified)" if dirty else "")


def run(videos: int, test_videos: int, shifts: list[str], data_dir: Path) -> tuple[str, float]:
    """`fvc demo` in `data_dir`; the generalisation table as markdown and the demo's seconds."""
    argv = [sys.executable, "-m", "fvc_dagster.cli", "--data-dir", str(data_dir), "demo",
            "--videos", str(videos), "--test-videos", str(test_videos)]  # fmt: skip
    argv += [f"--test-shift={shift}" for shift in shifts]
    env = {**os.environ, "DAGSTER_HOME": str(data_dir / "dagster_home")}
    (data_dir / "dagster_home").mkdir(parents=True)
    (data_dir / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    start = time.perf_counter()
    with open(data_dir / "demo.log", "w") as log:
        done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"fvc demo exited {done.returncode}; see {data_dir / 'demo.log'}")
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        table = con.execute("select * from fvc.generalisation").df()
    return generalisation_markdown(table), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--test-videos", type=int, default=24)
    parser.add_argument("--shift", action="append", default=None, metavar="AXIS=VALUE")
    parser.add_argument("--keep", help="data root to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    shifts = args.shift or ["codec=mpeg4"]
    with tempfile.TemporaryDirectory(prefix="generalisation_") as tmp:
        data_dir = Path(args.keep or tmp).resolve()
        table, seconds = run(args.videos, args.test_videos, shifts, data_dir)
    command = " ".join(
        ["python -m bench.generalisation", *(f"--shift {s}" for s in shifts),
         f"--videos {args.videos}", f"--test-videos {args.test_videos}"]
    )  # fmt: skip
    text = "\n".join(
        [
            "# Generalisation: trained on the default corpus, tested on a shifted one",
            "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- commit: {commit()}",
            f"- machine: {machine()}",
            f"- command: `{command}` (`fvc demo` in a fresh data root: {seconds:.0f} s)",
            "",
            f"Training corpus: the demo's ({args.videos} videos, seed 0, in cross-validation "
            f"folds). Test archive: {args.test_videos} videos of seed 1, shifted "
            f"({', '.join(shifts)}), declared test-only by its metadata's split column; no fit "
            "saw them. Cross-validated: the pooled held-out ROC-AUC with its 95% cascade-"
            "bootstrap interval and the 95% chance band. Test: the ROC-AUC of the mean of the "
            "model's fold models' P(fake) per test video, with its 95% cascade-bootstrap "
            "interval.",
            "",
            table,
            "",
        ]
    )
    write_atomic(RESULTS / "generalisation.md", lambda p: p.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
