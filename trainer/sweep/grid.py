"""The sweep's plan: which transforms and trainings one pipeline run performs.

A sweep trains the grid of an experiment (feature configs x model configs x seeds, narrowed
by its ``grid`` section). Every feature config is transformed once, and each of its trainings
reads that transform. These functions turn the validated config into the plain lists the
pipeline loops over; they import nothing heavy.
"""

from __future__ import annotations

from trainer import config as cfg
from trainer.config import RunSpec

# Keys of one training item of the sweep (a dict, as a KFP loop item).
FEATURE_CONFIG_ID = "feature_config_id"
MODEL_CONFIG_ID = "model_config_id"
SEED = "seed"
TRANSFORM_URI = "transform_uri"


def plan(config: cfg.ExperimentConfig) -> tuple[list[str], list[dict]]:
    """The feature configs to transform and the trainings, in config order.

    Returns:
        (feature config ids that at least one training uses, one dict per training with its
        feature config id, model config id and seed; the train step derives the run key).
    """
    trainings = [
        {
            FEATURE_CONFIG_ID: run.feature_config_id,
            MODEL_CONFIG_ID: run.model_config_id,
            SEED: run.seed,
        }
        for run in config.runs()
    ]
    used = {t[FEATURE_CONFIG_ID] for t in trainings}
    return [fc.id for fc in config.feature_configs if fc.id in used], trainings


def bind_transforms(trainings: list[dict], transforms: list[dict]) -> list[dict]:
    """Each training with the URI of its feature config's transform output.

    Args:
        trainings: The plan's trainings.
        transforms: One ``{feature_config_id, uri}`` per transformed feature config.

    Raises:
        ValueError: a training whose feature config was not transformed.
    """
    uris = {t[FEATURE_CONFIG_ID]: t["uri"] for t in transforms}
    missing = sorted({t[FEATURE_CONFIG_ID] for t in trainings} - set(uris))
    if missing:
        raise ValueError(
            f"no transform output for feature config(s) {', '.join(missing)} "
            f"(transformed: {', '.join(sorted(uris)) or 'none'})"
        )
    return [{**t, TRANSFORM_URI: uris[t[FEATURE_CONFIG_ID]]} for t in trainings]


def job_name(pipeline_job: str) -> str:
    """The pipeline job's name as the placeholder gave it, without a loop iteration's path.

    Vertex resolves ``{{$.pipeline_job_name}}`` to the job's name everywhere; kfp.local
    resolves it inside a ``ParallelFor`` to ``<job>/for-loop-2-iteration-0``. Job names never
    hold a "/", so what precedes one is the job on both.
    """
    return pipeline_job.split("/", 1)[0]


def run_key(
    config: cfg.ExperimentConfig,
    pipeline_job: str,
    feature_config_id: str = "",
    model_config_id: str = "",
    seed: int | None = None,
) -> str:
    """The key a training's MLflow run is found by when its task is retried ("" off a pipeline).

    Keyed by pipeline job + feature config + model config + seed, so a retried task (or a
    rerun of a failed pipeline job) resumes its run instead of leaving a duplicate.
    """
    if not pipeline_job:
        return ""
    pipeline_job = job_name(pipeline_job)
    spec = RunSpec(
        config.feature_config(feature_config_id).id,
        config.model_config(model_config_id).id,
        config.resolve_seed(seed),
    )
    return f"{pipeline_job}/{spec.key}"
