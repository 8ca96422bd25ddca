"""Resources: where data lives, how archives are read, and where training is tracked."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
from pydantic import Field

from fvc_dagster.lib.clips.scaling import ScaledClip, VaeScaler, letterbox
from fvc_dagster.lib.ingest.archives import (
    DEFAULT_LABEL_MAP,
    ArchiveLimits,
    InboxIndex,
    index_inbox,
)
from fvc_dagster.lib.ingest.splits import archive_patterns


class FvcStorage(dg.ConfigurableResource):
    """The data root (`FVC_DATA_DIR`, default `./data`) and the folders under it."""

    data_dir: str = Field(default="data", description="Root of every file the platform writes.")

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def video_store(self) -> Path:
        return self.root / "videos"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def clip_store(self) -> Path:
        return self.root / "clips"

    @property
    def scaled_store(self) -> Path:
        return self.root / "scaled"


MIB = 1024**2
_DEFAULT_LIMITS = ArchiveLimits()
# The inbox limits an environment variable sets (`inbox_limits_from`), bound through EnvVar.
INBOX_LIMIT_ENV = {
    "max_member_mb": "FVC_MAX_MEMBER_MB",
    "max_archive_mb": "FVC_MAX_ARCHIVE_MB",
    "max_members": "FVC_MAX_MEMBERS",
    "max_metadata_mb": "FVC_MAX_METADATA_MB",
    "max_quarantine_mb": "FVC_MAX_QUARANTINE_MB",
}


class VideoInbox(dg.ConfigurableResource):
    """Reads the archives of the inbox: password, zip-bomb limits, label mapping and the
    test-archive patterns."""

    storage: FvcStorage
    password: str | None = Field(
        default=None, description="Password of encrypted archives (set from FVC_ZIP_PASSWORD)."
    )
    max_member_mb: int = Field(
        default=_DEFAULT_LIMITS.max_member_bytes // MIB,
        description="Largest declared size of one member (FVC_MAX_MEMBER_MB).",
    )
    max_archive_mb: int = Field(
        default=_DEFAULT_LIMITS.max_archive_bytes // MIB,
        description="Largest declared total of one archive's members (FVC_MAX_ARCHIVE_MB).",
    )
    max_members: int = Field(
        default=_DEFAULT_LIMITS.max_members,
        description="Most members one archive may list (FVC_MAX_MEMBERS).",
    )
    max_metadata_mb: int = Field(
        default=_DEFAULT_LIMITS.max_metadata_bytes // MIB,
        description="Largest metadata CSV read, by the sensor too (FVC_MAX_METADATA_MB).",
    )
    max_quarantine_mb: int = Field(
        default=_DEFAULT_LIMITS.max_quarantine_bytes // MIB,
        description="What quarantine/ may hold; a failed video past it is not kept "
        "(FVC_MAX_QUARANTINE_MB).",
    )
    max_compression_ratio: float = _DEFAULT_LIMITS.max_compression_ratio
    label_map: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_LABEL_MAP),
        description="Metadata label -> training label (real/fake); unmapped labels do not train.",
    )
    test_archives: str = Field(
        default="",
        description="Comma-separated fnmatch patterns of archive names whose videos are "
        "test-only, e.g. 'Shifted*.zip,Test*.zip' (FVC_TEST_ARCHIVES).",
    )

    @property
    def limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_member_bytes=self.max_member_mb * MIB,
            max_archive_bytes=self.max_archive_mb * MIB,
            max_compression_ratio=self.max_compression_ratio,
            max_members=self.max_members,
            max_metadata_bytes=self.max_metadata_mb * MIB,
            max_quarantine_bytes=self.max_quarantine_mb * MIB,
        )

    @property
    def test_archive_patterns(self) -> tuple[str, ...]:
        return archive_patterns(self.test_archives)

    def index(self) -> InboxIndex:
        return index_inbox(self.storage.inbox, self.password, self.limits)


def inbox_limits_from(environ: Mapping[str, str]) -> dict[str, dg.EnvVar]:
    """The `VideoInbox` limits that `environ` sets, each bound through its EnvVar."""
    return {name: dg.EnvVar.int(var) for name, var in INBOX_LIMIT_ENV.items() if environ.get(var)}


class ClipSampling(dg.ConfigurableResource):
    """How clips are cut from a video: K uniformly sampled frames."""

    frames_per_clip: int = Field(default=16, ge=1)


class ClipScaling(dg.ConfigurableResource):
    """Stage 3: letterbox (default) or a diffusers AutoencoderKL, to a max dimension of 256."""

    method: Literal["letterbox", "vae"] = "letterbox"
    vae_weights_dir: str | None = Field(
        default=None,
        description="A saved AutoencoderKL (or a Stable Diffusion folder with vae/); "
        "empty: the Hugging Face cache entry of stabilityai/sd-vae-ft-mse.",
    )
    device: str | None = Field(default=None, description="cuda or cpu; empty: cuda when present")
    batch_size: int = 8

    def scaler(self) -> Callable[[np.ndarray], ScaledClip]:
        """The clip scaler; loading the VAE fails with a message naming the missing weights."""
        if self.method == "letterbox":
            return letterbox
        vae = VaeScaler.from_directory(self.vae_weights_dir, self.device, self.batch_size)
        return vae.scale


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking through its own API; every run it opens ends FINISHED or FAILED."""

    tracking_uri: str
    artifact_root: str = Field(description="Where the experiment's artifacts (models) are kept.")
    experiment: str = "fvc-baselines"
    network_experiment: str = Field(
        default="fvc-networks", description="The experiment of the video networks' fold runs."
    )
    champion_experiment: str = Field(
        default="fvc-champion", description="The experiment of the champion's refit runs."
    )
    comparison_experiment: str = Field(
        default="fvc-comparison", description="The experiment of the comparison's figures."
    )
    embedding_experiment: str = Field(
        default="fvc-embeddings",
        description="The experiment of the XGBoost models' fold runs on clip embeddings.",
    )

    def client(self):
        """An MlflowClient of this tracking server (its registry too)."""
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(self.tracking_uri)
        return MlflowClient(self.tracking_uri)

    def fit_videos(self, run_id: str) -> dict[str, list[str]]:
        """The videos a fold run's fit used, by role (`lib.training.tracking.log_fit_videos`)."""
        import mlflow

        from fvc_dagster.lib.training.tracking import FIT_VIDEOS

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{FIT_VIDEOS}")

    def load_champion(self):
        """The registered champion (pyfunc model) and its model version."""
        from fvc_dagster.lib.serving.mlflow_registry import load_champion

        return load_champion(self.tracking_uri)

    @contextlib.contextmanager
    def start_run(
        self, run_name: str, tags: dict[str, str], experiment: str | None = None
    ) -> Iterator:
        """An MLflow run in `experiment` (default: the baselines' one), created if new."""
        import mlflow

        experiment = experiment or self.experiment
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            # A tracking server (http[s]) puts artifacts where it serves them from.
            server = self.tracking_uri.startswith(("http://", "https://"))
            location = None if server else Path(self.artifact_root, experiment).resolve().as_uri()
            try:
                mlflow.create_experiment(experiment, artifact_location=location)
            except mlflow.exceptions.MlflowException:
                if mlflow.get_experiment_by_name(experiment) is None:
                    raise  # not another worker creating it at the same time
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name, tags=tags) as run:
            yield run
