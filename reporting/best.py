"""The best run of a pipeline job, and its model: what a sweep hands to deployment.

The best run is the one the report ranks first among this job's finished runs: ordered by
the rank metric in its direction (``trainer.contract.metric_direction``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from mlflow.tracking import MlflowClient

from trainer import contract


class NoFinishedRunError(RuntimeError):
    """The pipeline job has no finished run with the rank metric."""


@dataclasses.dataclass
class BestRun:
    """The chosen run: its id, configs, test metrics and where its model is."""

    run_id: str
    feature_config_id: str
    model_config_id: str
    seed: str
    metrics: dict[str, float]
    model_uri: str


def best_run(
    tracking_uri: str, experiment: str, rank_metric: str, pipeline_job: str = ""
) -> BestRun:
    """The finished run of ``pipeline_job`` (every run when empty) ranked first by the metric.

    Raises:
        NoFinishedRunError: no finished run carries the rank metric.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise NoFinishedRunError(f"MLflow experiment {experiment!r} does not exist")
    order = "ASC" if contract.metric_direction(rank_metric) == contract.LOWER else "DESC"
    filters = [f"attributes.status = '{contract.STATUS_FINISHED}'"]
    if pipeline_job:
        job = pipeline_job.replace("'", "\\'")
        filters.append(f"tags.`{contract.TAG_PIPELINE_JOB}` = '{job}'")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=" and ".join(filters),
        order_by=[f"metrics.`{rank_metric}` {order}"],
        max_results=50,
    )
    ranked = [r for r in runs if rank_metric in r.data.metrics]
    if not ranked:
        scope = f"pipeline job {pipeline_job!r}" if pipeline_job else "the experiment"
        raise NoFinishedRunError(f"no finished run of {scope} has the metric {rank_metric!r}")
    run = ranked[0]
    return BestRun(
        run_id=run.info.run_id,
        feature_config_id=run.data.params.get(contract.PARAM_FEATURE_CONFIG_ID, ""),
        model_config_id=run.data.params.get(contract.PARAM_MODEL_CONFIG_ID, ""),
        seed=run.data.params.get(contract.PARAM_SEED, ""),
        metrics={
            k: v
            for k, v in run.data.metrics.items()
            if k.startswith(("test_", "baseline_")) or k == rank_metric
        },
        model_uri=run.data.tags.get(contract.TAG_MODEL_URI, ""),
    )


def local_path(uri: str) -> str:
    """A path this process can read for an artifact URI (Vertex mounts GCS under /gcs/)."""
    if uri.startswith("gs://"):
        return "/gcs/" + uri[len("gs://") :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri


def copy_model(model_uri: str, dest: str) -> str:
    """Copies a train step's model folder to ``dest``; returns ``dest``."""
    source = local_path(model_uri)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"the best run's model folder {model_uri} is not readable")
    shutil.copytree(source, dest, dirs_exist_ok=True)
    return dest
