"""The best run of a pipeline job, and its model: what a sweep hands to deployment.

The best run is the one the report's leaderboard ranks first among this job's finished runs:
the same reader (``ExperimentReader``: every run, paged), the same protocol rule (only runs
with the job's protocol key, ``reporting.protocol``) and the same ranking
(``aggregate.leaderboard``: the rank metric in its direction, non-finite values unranked, ties to
the newer run).

Here every run of the sweep is known, so here the runs are judged against the leader with a
paired test (:func:`tag_ties`): the leader's and each run's per-buyer validation rows
(``evaluation/per_buyer_val.parquet``, the same buyers under one protocol) are resampled
together, and each run is tagged with the leader's id, whether it is tied with it and the
interval of the difference. The report reads those tags instead of computing any bootstrap.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import pandas as pd

from reporting import aggregate, protocol, ties
from reporting.metric import RankMetric
from reporting.query import ExperimentReader
from trainer import contract, retrieval

log = logging.getLogger(__name__)

VAL_ROWS = f"{contract.EVALUATION_ARTIFACT_DIR}/{contract.PER_BUYER_VAL_FILE}"


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
    tied_run_ids: list[str] = dataclasses.field(default_factory=list)


def best_run(
    tracking_uri: str,
    experiment: str,
    rank_metric: str,
    pipeline_job: str = "",
    end_lost: bool = True,
    lost_after_s: float = contract.LOST_AFTER_S,
    mark_ties: bool = True,
) -> BestRun:
    """The finished run of ``pipeline_job`` (every run when empty) ranked first by the metric.

    A successive-halving trial stopped at a rung (``contract.TAG_HALVING_STATUS``) is not one.

    With ``end_lost`` the experiment's lost runs (RUNNING, silent for over ``lost_after_s``)
    are ended FAILED first, as the report ends them. With ``mark_ties`` the competing runs are
    judged against the winner and tagged (:func:`tag_ties`).

    Raises:
        NoFinishedRunError: no finished run carries the rank metric.
    """
    reader = ExperimentReader(tracking_uri)
    data = reader.read(experiment, end_lost=end_lost, lost_after_s=lost_after_s)
    if not data.experiment_id:
        raise NoFinishedRunError(f"MLflow experiment {experiment!r} does not exist")
    # A halving trial stopped at a rung was never evaluated on test: it does not compete.
    finished = [
        run
        for run in data.runs
        if run.status == contract.STATUS_FINISHED
        and (not pipeline_job or run.pipeline_job == pipeline_job)
        and run.tags.get(contract.TAG_HALVING_STATUS) != contract.HALVING_STOPPED
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
    found = tag_ties(reader, ranked, RankMetric.of(rank_metric)) if mark_ties else {}
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
        tied_run_ids=[i for i, t in found.items() if isinstance(t, ties.PairedTie) and t.tied],
    )


def _val_rows(reader: ExperimentReader, run_id: str, folder: str) -> pd.DataFrame | None:
    """The model's per-buyer validation rows logged by a run (None: it logged none)."""
    path = reader.artifact(run_id, VAL_ROWS, folder)
    if path is None:
        return None
    rows = pd.read_parquet(path)
    return rows[rows[contract.SCORER] == contract.SCORER_MODEL].reset_index(drop=True)


def tag_ties(
    reader: ExperimentReader,
    ranked: Sequence[aggregate.LeaderRow],
    rank: RankMetric,
    limit: int = contract.TIE_CHECK_RUNS,
) -> dict[str, ties.PairedTie | str]:
    """Judges the ``limit`` best ranked runs against the first, paired, and tags each judged run.

    Only on a validation recall (the rank metric's k); a run without per-buyer validation rows,
    or with other buyers than the leader's, is left untagged (the report falls back to its
    approximate test there). The leader is tagged as tied with itself.

    Returns:
        Run id -> its :class:`ties.PairedTie`, or why it was not judged (the leader left out).
    """
    k = contract.recall_k(rank.name)
    if not rank.on_validation or k is None:
        log.warning("ties are judged on a validation recall, not %r: no tie tags", rank.name)
        return {}
    judged = list(ranked[:limit])
    leader_id = judged[0].run.run_id
    with tempfile.TemporaryDirectory(prefix="ties-") as tmp:
        rows = {
            row.run.run_id: frame
            for i, row in enumerate(judged)
            if (frame := _val_rows(reader, row.run.run_id, os.path.join(tmp, str(i)))) is not None
        }
    if leader_id not in rows:
        log.warning("best run %s has no %s: runs not judged against it", leader_id, VAL_ROWS)
        return {}
    lead = rows.pop(leader_id)
    found: dict[str, ties.PairedTie | str] = {
        r.run.run_id: f"no {VAL_ROWS}" for r in judged[1:] if r.run.run_id not in rows
    }
    found.update(ties.paired_ties(lead, rows, k))
    itself = ties.PairedTie(retrieval.Estimate(0.0, 0.0, 0.0), True, len(lead))
    for run_id, tie in [(leader_id, itself), *found.items()]:
        if isinstance(tie, str):
            log.warning("run %s not judged against the best run %s: %s", run_id, leader_id, tie)
        else:
            reader.set_tags(run_id, tie.tags(leader_id, k, contract.BOOTSTRAP_RESAMPLES))
    return found


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
