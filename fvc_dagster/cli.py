"""`fvc`: generate a synthetic corpus, run the whole platform on it (`fvc demo`), list the model
portfolio (`fvc models`), score videos with the registered champion (`fvc score`) or serve it
over HTTP (`fvc serve`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_DATA_DIR = "data"


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("FVC_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def cmd_generate(args: argparse.Namespace) -> int:
    from fvc_dagster.local.corpus import CorpusSpec, generate_corpus, shift_of, shifted

    out = Path(args.out) if args.out else _data_dir(args.data_dir) / "inbox"
    password = os.environ.get(args.password_env) if args.password_env else None
    spec = CorpusSpec(
        n_videos=args.videos,
        n_archives=args.archives,
        seed=args.seed,
        password=password,
        split=args.split,
        prefix=args.prefix,
    )
    start = time.perf_counter()
    try:
        spec = shifted(spec, args.shift or [])
        videos = generate_corpus(out, spec, progress=True)
    except ValueError as exc:
        raise SystemExit(f"fvc generate: {exc}") from None
    shift = ", ".join(f"{axis}={value}" for axis, value in shift_of(spec).items())
    print(
        f"wrote {len(videos)} videos in {spec.n_archives} archives to {out} "
        f"({time.perf_counter() - start:.1f} s)" + (f", shifted: {shift}" if shift else "")
    )
    return 0


def resolution(value: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT`, e.g. `1280x720`."""
    from fvc_dagster.local.corpus import parse_resolution

    try:
        return parse_resolution(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chosen(value: str, known: list[str], what: str) -> tuple[str, ...]:
    """Comma-separated names of `known`, `all` or `none`."""
    if value in ("all", "none"):
        return tuple(known) if value == "all" else ()
    names = tuple(value.split(","))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {', '.join(known)} or all")
    return names


def _networks(value: str) -> tuple[str, ...]:
    from fvc_dagster.lib.models import models_of

    return _chosen(value, models_of("network"), "networks")


def _embedding_models(value: str) -> tuple[str, ...]:
    from fvc_dagster.lib.models import models_of

    return _chosen(value, models_of("embedding"), "embedding models")


def cmd_demo(args: argparse.Namespace) -> int:
    from fvc_dagster.local.corpus import CorpusSpec, shifted
    from fvc_dagster.local.demo import (
        DEMO_EMBEDDING_MODELS,
        DEMO_NETWORKS,
        DEMO_TEST_SHIFT,
        DEMO_TEST_VIDEOS,
        run_demo,
    )

    test_shift = DEMO_TEST_SHIFT if args.test_shift is None else args.test_shift
    try:
        shifted(CorpusSpec(), test_shift)
    except ValueError as exc:
        raise SystemExit(f"fvc demo: {exc}") from None

    return run_demo(
        _data_dir(args.data_dir),
        n_videos=args.videos,
        n_archives=args.archives,
        seed=args.seed,
        networks=_networks(args.models) if args.models else DEMO_NETWORKS,
        embedding_models=(
            _embedding_models(args.embedding_models)
            if args.embedding_models
            else DEMO_EMBEDDING_MODELS
        ),
        test_videos=DEMO_TEST_VIDEOS if args.test_videos is None else args.test_videos,
        test_shift=test_shift,
    )


def cmd_models(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from fvc_dagster.lib.models import portfolio

    rows = portfolio()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        {
            "name": r["name"],
            "kind": r["kind"],
            "family": r["family"],
            "input": r["input"],
            "clip": f"{r['frames']}x{r['pixels']}px" if r["frames"] else "",
            "parameters": f"{r['parameters']:,}" if r["parameters"] else "",
            "pretrained": r["pretrained"] or "",
            "weights": r["weights"] or "",
        }
        for r in rows
    ]
    print(tabulate(table, headers="keys"))
    return 0


def _registry_uri(args: argparse.Namespace) -> str:
    """The scale-out profile's server when MLFLOW_TRACKING_URI names it, else the data root's."""
    from fvc_dagster.lib.serving.mlflow_registry import local_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(_data_dir(args.data_dir))


def cmd_score(args: argparse.Namespace) -> int:
    from fvc_dagster.lib.serving.mlflow_registry import RegistryUnavailable, load_champion

    try:
        model, version = load_champion(_registry_uri(args))
    except (LookupError, RegistryUnavailable) as exc:
        print(f"fvc score: {exc}", file=sys.stderr)
        return 2
    detector = model.unwrap_python_model().detector
    # The files this user names, read with this user's rights: no serving root applies.
    scores = detector.score_paths(args.videos)
    scores = scores.assign(model=detector.model_name, version=str(version.version))
    if args.json:
        print(scores.to_json(orient="records", indent=2))
    for row in scores.itertuples():
        if row.error:
            print(f"fvc score: {row.error}", file=sys.stderr)
        elif not args.json:
            caution = row.out_of_distribution and _novelty_warning(row.novelty, detector)
            print(
                f"{row.path}: P(fake) = {row.probability_fake:.3f} -> {row.label} "
                f"(threshold {detector.threshold}; fvc-detector v{row.version}, {row.model})"
                f"{caution or ''}"
            )
    return 1 if scores["error"].notna().any() else 0


def _novelty_warning(distance: float, detector) -> str:
    """What `fvc score` adds to the line of a video beyond the champion's novelty threshold."""
    return (
        ", but this video is unlike the videos the model was trained on (distance "
        f"{distance:.1f} > {detector.novelty.threshold:.1f}): treat the score with caution"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """`mlflow models serve` of the champion, with this environment's scripts first on PATH:
    MLflow starts `uvicorn` from PATH, so the command works without an activated venv."""
    from mlflow import MlflowClient

    from fvc_dagster.lib.serving.mlflow_registry import (
        ALIAS,
        REGISTERED_MODEL,
        RegistryUnavailable,
        champion_version,
    )
    from fvc_dagster.lib.serving.requests import SERVING_ROOT, serving_root

    uri = _registry_uri(args)
    try:
        version = champion_version(MlflowClient(uri))
    except RegistryUnavailable as exc:
        print(f"fvc serve: {exc}", file=sys.stderr)
        return 2
    if version is None:
        print(f"fvc serve: no {REGISTERED_MODEL}@{ALIAS} at {uri}: materialize champion_model "
              "(make demo does)", file=sys.stderr)  # fmt: skip
        return 2
    root = serving_root()
    print(
        f"fvc serve: {REGISTERED_MODEL} v{version.version} ({version.tags.get('model')}) at "
        f"http://{args.host}:{args.port}/invocations; video bytes, "
        + (f"and paths under {root}" if root else f"no paths (${SERVING_ROOT} is unset)"),
        file=sys.stderr,
        flush=True,
    )
    scripts = Path(sys.executable).parent  # the environment's bin, not the interpreter's target
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": os.pathsep.join([str(scripts), os.environ.get("PATH", "")])}  # fmt: skip
    model = f"models:/{REGISTERED_MODEL}@{ALIAS}"
    command = [str(scripts / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
               "-h", args.host, "-p", str(args.port)]  # fmt: skip
    os.execve(command[0], command, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fvc", description=__doc__)
    parser.add_argument("--data-dir", help="data root (default: $FVC_DATA_DIR or ./data)")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write FVC-style archives of synthetic videos")
    generate.add_argument("--out", help="folder for the archives (default: <data root>/inbox)")
    generate.add_argument("--password-env", help="encrypt with the password in this variable")
    generate.add_argument(
        "--shift",
        action="append",
        metavar="AXIS=VALUE",
        help="shift the corpus from the default along an axis, e.g. codec=mpeg4 or "
        "resolution=1280x720 (every original at that size); repeatable, a wrong one lists the "
        "axes and their values; recorded in every archive's zip comment",
    )
    generate.add_argument(
        "--split",
        help="add a split column to the metadata CSVs, this value (train or test) for every video",
    )
    generate.add_argument(
        "--prefix",
        default="",
        help="before every archive name and cascade id (e.g. Test: TestFVC1.zip, "
        "TestMetadata.zip), so a second corpus can join the first in one inbox",
    )
    demo = commands.add_parser("demo", help="corpus -> sensor -> every asset -> model comparison")
    for sub in (generate, demo):
        sub.add_argument("--videos", type=int, default=60)
        sub.add_argument("--archives", type=int, default=3)
        sub.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--models",
        help="video networks to train after the baselines: NAME,..., all or none "
        "(default: naive_cnn, the cheapest, from scratch)",
    )
    demo.add_argument(
        "--embedding-models",
        help="XGBoost-on-embeddings models to train (their clips embedded first): NAME,..., all "
        "or none (default: xgboost_pretrained_inception, at 4x32 px with random weights)",
    )
    demo.add_argument(
        "--test-videos",
        type=int,
        help="videos of the held-out test archive (TestFVC1.zip, another seed; default 16; 0: "
        "none), which every model scores and none trains on: the generalisation table",
    )
    demo.add_argument(
        "--test-shift",
        action="append",
        metavar="AXIS=VALUE",
        help="how the test archive is shifted from the training corpus, as for `fvc generate "
        "--shift` (repeatable; default codec=mpeg4; `codec=h264` for an unshifted one)",
    )
    models = commands.add_parser("models", help="the model portfolio and where its weights are")
    models.add_argument("--json", action="store_true", help="print JSON rows")
    score = commands.add_parser(
        "score",
        help="P(fake) of video files by the registered champion (fvc-detector@champion) of the "
        "data root, or of the MLflow server MLFLOW_TRACKING_URI names",
    )
    score.add_argument("videos", nargs="+", help="video files (any container PyAV opens)")
    score.add_argument("--json", action="store_true", help="print JSON rows")
    serve = commands.add_parser(
        "serve",
        help="serve the champion over HTTP (POST /invocations): video bytes, or paths under "
        "$FVC_SERVING_ROOT; the registry as for `score`",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001)
    generate.set_defaults(func=cmd_generate)
    demo.set_defaults(func=cmd_demo)
    models.set_defaults(func=cmd_models)
    score.set_defaults(func=cmd_score)
    serve.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    return args.func(args)


def run() -> None:
    """Console entry point: progress bars only on a terminal, and skip interpreter teardown,
    where DuckDB's bindings print a spurious reference-leak report after everything is
    written."""
    if not sys.stderr.isatty():  # MLflow's artifact bars: frames in a log, not progress
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
