"""The best run of a pipeline job, and its model: what a sweep hands to deployment.

The best run is the one the report's leaderboard ranks first among this job's finished runs:
the same reader (``ExperimentReader``: every run, paged), the same protocol rule (only runs
with the job's protocol key, ``reporting.protocol``) and the same ranking
(``aggregate.leaderboard``: the rank metric in its direction, non-finite values unranked, ties to
the newer run).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from reporting import aggregate, protocol
from reporting.metric import RankMetric
from reporting.query import ExperimentReader
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
    tracking_uri: str,
    experiment: str,
    rank_metric: str,
    pipeline_job: str = "",
    end_lost: bool = True,
    lost_after_s: float = contract.LOST_AFTER_S,
) -> BestRun:
    """The finished run of ``pipeline_job`` (every run when empty) ranked first by the metric.

    With ``end_lost`` the experiment's lost runs (RUNNING, silent for over ``lost_after_s``)
    are ended FAILED first, as the report ends them.

    Raises:
        NoFinishedRunError: no finished run carries the rank metric.
    """
    data = ExperimentReader(tracking_uri).read(
        experiment, end_lost=end_lost, lost_after_s=lost_after_s
    )
    if not data.experiment_id:
        raise NoFinishedRunError(f"MLflow experiment {experiment!r} does not exist")
    finished = [
        run
        for run in data.runs
        if run.status == contract.STATUS_FINISHED
        and (not pipeline_job or run.pipeline_job == pipeline_job)
    ]
    # Only runs evaluated alike compete: the job's protocol (else the latest run's).
    finished, _ = protocol.split_comparable(finished, protocol.reference(finished, pipeline_job))
    ranked = [
        row for row in aggregate.leaderboard(finished, RankMetric.of(rank_metric)) if row.rank
    ]
    if not ranked:
        scope = f"pipeline job {pipeline_job!r}" if pipeline_job else "the experiment"
        raise NoFinishedRunError(f"no finished run of {scope} has the metric {rank_metric!r}")
    run = ranked[0].run
    return BestRun(
        run_id=run.run_id,
        feature_config_id=run.params.get(contract.PARAM_FEATURE_CONFIG_ID, ""),
        model_config_id=run.params.get(contract.PARAM_MODEL_CONFIG_ID, ""),
        seed=run.params.get(contract.PARAM_SEED, ""),
        metrics={
            k: v
            for k, v in run.metrics.items()
            if k.startswith(("test_", "baseline_")) or k == rank_metric
        },
        model_uri=run.tags.get(contract.TAG_MODEL_URI, ""),
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
