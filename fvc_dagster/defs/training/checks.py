"""Blocking checks: no cascade straddles folds, every fold holds both classes, no clip of a
held-out video (original, augmented or scaled, as its files say) trains its fold, and every
model's fold fits (baselines, networks, embedding models, the ensemble) were blind to the fold
they score, as each fit recorded the videos it used."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from fvc_dagster.defs.partitions import N_FOLDS
from fvc_dagster.defs.resources import FvcStorage, MlflowTracking
from fvc_dagster.defs.training.assets import baseline_assets, cv_folds, ensemble, training_clips
from fvc_dagster.defs.training.embeddings import embedding_model_assets
from fvc_dagster.defs.training.networks import network_assets
from fvc_dagster.defs.warehouse import existing_table
from fvc_dagster.lib.training.fold_data import TRAIN, clip_owners, fit_leaks, leak_report
from fvc_dagster.lib.training.folds import folds_missing_a_class, groups_in_several_folds


@dg.asset_check(asset=cv_folds, blocking=True)
def no_cascade_in_two_folds(cv_folds: pd.DataFrame) -> dg.AssetCheckResult:
    """Every duplicate group (cascade) lies in exactly one fold."""
    straddling = groups_in_several_folds(cv_folds)
    return dg.AssetCheckResult(
        passed=not straddling,
        metadata={
            "straddling_cascades": dg.MetadataValue.json(straddling[:50]),
            "cascades": dg.MetadataValue.int(cv_folds["dup_group"].nunique()),
        },
    )


@dg.asset_check(asset=cv_folds, blocking=True)
def every_fold_has_both_classes(cv_folds: pd.DataFrame) -> dg.AssetCheckResult:
    """Each of the folds holds real and fake videos, so every validation is two-class."""
    missing = folds_missing_a_class(cv_folds, N_FOLDS)
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={
            "folds_missing_a_class": dg.MetadataValue.json({str(k): v for k, v in missing.items()})
        },
    )


@dg.asset_check(asset=training_clips, blocking=True, additional_ins={"cv_folds": dg.AssetIn()})
def no_held_out_clip_in_training(
    training_clips: pd.DataFrame, cv_folds: pd.DataFrame, storage: FvcStorage
) -> dg.AssetCheckResult:
    """No fold trains on a clip whose files lie under a video it holds out, and every training
    clip has exactly one owner: its clip file and scaled file, under the same video's folder.

    Owners come from the clip and scaled stores (`<store>/<video_id>/<clip_id>.avi`), never from
    a table row. Fails on leaked clips, unknown clips (a file missing from a store) and
    conflicting clips (files under several videos)."""
    report = leak_report(
        training_clips,
        cv_folds,
        {"clips": clip_owners(storage.clip_store), "scaled": clip_owners(storage.scaled_store)},
    )
    found = {
        "leaked": report.leaked[["fold", "clip_id", "video_id", "owner"]],
        "unknown": report.unknown[["fold", "clip_id", "video_id", "missing_from"]],
        "conflicting": report.conflicting,
    }
    return dg.AssetCheckResult(
        passed=report.passed,
        metadata={
            "training_rows": dg.MetadataValue.int(int((training_clips["role"] == TRAIN).sum())),
            **{f"{kind}_clips": dg.MetadataValue.int(len(rows)) for kind, rows in found.items()},
            **{
                f"{kind}_examples": dg.MetadataValue.json(rows.head(20).to_dict("records"))
                for kind, rows in found.items()
            },
        },
    )


def fold_fits_blind(model_asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """A blocking check that every fold of `model_asset` was fit blind to its own videos."""

    @dg.asset_check(
        asset=model_asset,
        name="fit_blind_to_its_fold",
        blocking=True,
        additional_ins={"cv_folds": dg.AssetIn()},
    )
    def _check(
        cv_folds: pd.DataFrame, warehouse: DuckDBResource, mlflow: MlflowTracking
    ) -> dg.AssetCheckResult:
        table = existing_table(warehouse, model_asset.key.path[-1])
        if table is None:
            table = pd.DataFrame(columns=["fold", "mlflow_run_id"])
        runs = dict(zip(table["fold"], table["mlflow_run_id"], strict=True))
        leaks = [
            fit_leaks(int(fold), mlflow.fit_videos(run_id), cv_folds)
            for fold, run_id in sorted(runs.items())
        ]
        found = pd.concat(leaks, ignore_index=True) if leaks else pd.DataFrame()
        return dg.AssetCheckResult(
            passed=bool(runs) and found.empty,
            metadata={
                "folds_checked": dg.MetadataValue.int(len(runs)),
                "leaked_or_stray_videos": dg.MetadataValue.int(len(found)),
                "examples": dg.MetadataValue.json(found.head(20).to_dict("records")),
            },
        )

    _check.__doc__ = (
        "Every fold's fit, as its MLflow run records it (fit_videos.json), trained and chose "
        "its epoch or stacking on no video that cv_folds places in that fold, and scored only "
        "that fold's videos."
    )
    return _check


fit_blind_checks = [
    fold_fits_blind(asset)
    for asset in (*baseline_assets, *network_assets, *embedding_model_assets, ensemble)
]
