"""One fold-partitioned asset per registry model, named as the model, made by one factory: a
row of the registry is all it takes. Each asset fits its model on each fold of the run (blind
to that fold's videos) in an MLflow run per fold and stores the fold's held-out predictions.

Its kind decides the rest: what it reads, its group, the MLflow experiment, whether it updates
itself when its inputs change (tabular models and the ensemble) or trains on request (networks
and embedding models), its config (networks)."""

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from fvc_dagster.defs.automation import UPDATE_ON_NEW_DATA
from fvc_dagster.defs.batching import per_fold_asset
from fvc_dagster.defs.models.fits import (
    EmbeddingFitter,
    EnsembleFitter,
    Fitter,
    NetworkFitter,
    NetworkTraining,
    TabularFitter,
)
from fvc_dagster.defs.partitions import ALL_VIDEOS
from fvc_dagster.lib.evaluation.metrics import TEST, VALIDATION, prediction_rows, scores_markdown
from fvc_dagster.lib.models import REGISTRY, ModelSpec, models_of

FEATURES_INS = {
    "training_clips": dg.AssetIn(),
    "handcrafted_features": ALL_VIDEOS,
    "scaled_features": ALL_VIDEOS,
}


@dataclass(frozen=True)
class KindAssets:
    """What the assets of one kind of model share."""

    group: str
    ins: dict[str, dg.AssetIn]
    fitter: type[Fitter]
    experiment: str  # the `MlflowTracking` field naming the MLflow experiment of its fold runs
    description: str  # of the asset, `{model}` replaced
    tags: frozenset[str] = frozenset({"duckdb", "mlflow"})
    automation: dg.AutomationCondition | None = None
    config: type[dg.Config] | None = None
    deps_kinds: tuple[str, ...] = field(default=())  # kinds whose assets it reads from tables


KIND_ASSETS = {
    "tabular": KindAssets(
        group="models",
        ins=FEATURES_INS,
        fitter=TabularFitter,
        experiment="experiment",
        description="{model} on the clip features, fit on the original clips of the other "
        "folds' videos",
        automation=UPDATE_ON_NEW_DATA,
    ),
    "network": KindAssets(
        group="networks",
        ins={
            "training_clips": dg.AssetIn(),
            "augmented_clips": ALL_VIDEOS,
            "scaled_clips": ALL_VIDEOS,
        },
        fitter=NetworkFitter,
        experiment="network_experiment",
        description="the {model} network trained on the fold's training clips (the originals "
        "and the augmentations configured; native windows by default), its epoch chosen on an "
        "inner fold or fixed, scored once",
        tags=frozenset({"duckdb", "mlflow", "pytorch"}),
        config=NetworkTraining,
    ),
    "embedding": KindAssets(
        group="embeddings",
        ins={"training_clips": dg.AssetIn(), "clip_embeddings": ALL_VIDEOS},
        fitter=EmbeddingFitter,
        experiment="embedding_experiment",
        description="{model}: XGBoost fit on the fold's training clips' embeddings by its "
        "backbone's frozen trunk (clip_embeddings)",
        tags=frozenset({"duckdb", "mlflow", "xgboost"}),
    ),
    "ensemble": KindAssets(
        group="models",
        ins={**FEATURES_INS, "cv_folds": dg.AssetIn()},
        fitter=EnsembleFitter,
        experiment="experiment",
        description="the stacked P(fake) of the tabular models and the embedding models "
        "trained on the current folds' videos, every learner and the non-negative "
        "meta-learner fit inside the fold's training folds",
        automation=UPDATE_ON_NEW_DATA,
        deps_kinds=("tabular", "embedding"),
    ),
}


def model_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    """The asset of the registry row `spec`: one row per held-out clip of each fold, the
    model's P(fake) for it, fit on the other folds, and one per test clip by the same model
    (`role`)."""
    kind = KIND_ASSETS[spec.kind]

    @per_fold_asset(
        name=spec.name,
        group_name=kind.group,
        kinds=set(kind.tags),
        ins=kind.ins,
        deps=[dg.AssetKey(m) for k in kind.deps_kinds for m in models_of(k)],
        automation_condition=kind.automation,
        config_schema=kind.config.to_config_schema() if kind.config else None,
        required_resource_keys={"mlflow", "storage", "warehouse"},
        description=f"One row per validation clip of each fold: the held-out P(fake) of "
        f"{kind.description.format(model=spec.name)}; and one per test clip of each fold "
        "(role test), by the fold's model.",
    )
    def _model(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> pd.DataFrame:
        from fvc_dagster.lib.training.tracking import log_fold_figure

        mlflow = context.resources.mlflow
        fitter = kind.fitter(spec, context, inputs)
        rows = []
        for fold in context.partition_keys:
            with mlflow.start_run(
                run_name=f"{spec.name}-fold{fold}",
                tags={"dagster_run_id": context.run_id, "model": spec.name, "fold": fold},
                experiment=getattr(mlflow, kind.experiment),
            ) as run:
                fit = fitter.fit(int(fold))
                held_out, test = (
                    prediction_rows(spec.name, fold, scored, probabilities, fit.n_train,
                                    run.info.run_id, fit.weights, role)
                    for scored, probabilities, role in (
                        (fit.scored, fit.probabilities, VALIDATION),
                        (fit.test_scored, fit.test_probabilities, TEST),
                    )
                )  # fmt: skip
                log_fold_figure(held_out)
            rows.extend(part for part in (held_out, test) if len(part))
            context.log.info(f"{spec.name} fold {fold}: {fit.summary}")
        table = pd.concat(rows, ignore_index=True)
        context.add_output_metadata(
            {"scores": dg.MetadataValue.md(scores_markdown(table)), **fitter.metadata()}
        )
        return table

    return _model


MODEL_ASSETS = [model_asset(spec) for spec in REGISTRY.values()]
