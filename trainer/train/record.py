"""What a training's MLflow run records about itself.

Its name, its contract tags, its best epoch and the summary metrics (each history metric's
last and best-epoch value).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from trainer import config as cfg
from trainer import contract, sweep
from trainer.tracking import RunTracker


def run_name(fc: cfg.FeatureConfig, mc: cfg.ModelConfig) -> str:
    """A readable MLflow run name: the config pair and the start time (UTC)."""
    return f"{fc.id}-{mc.id}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"


def run_tags(
    config: cfg.ExperimentConfig,
    fc: cfg.FeatureConfig,
    mc: cfg.ModelConfig,
    pipeline_job: str = "",
    pipeline_task: str = "",
) -> dict[str, str]:
    """The contract tags of a run."""
    tags = {
        contract.TAG_FEATURE_CONFIG_NAME: fc.name,
        contract.TAG_MODEL_CONFIG_NAME: mc.name,
        contract.TAG_DATASET_NAME: config.dataset.name,
        contract.TAG_MODEL_TYPE: contract.MODEL_TYPE_TWO_TOWER,
    }
    if config.training.exclude_seen:
        applicable = contract.applicable_baselines(exclude_seen=True)
        tags[contract.TAG_BASELINES_NOT_APPLICABLE] = ",".join(
            b for b in contract.BASELINES if b not in applicable
        )
    if mc.repurchase_scores and not fc.has_history:
        tags[contract.TAG_REPURCHASE_SCORES] = f"off: feature config {fc.id!r} has no history"
    if pipeline_job:
        tags[contract.TAG_PIPELINE_JOB] = sweep.job_name(pipeline_job)
    if pipeline_task:
        tags[contract.TAG_PIPELINE_TASK] = pipeline_task
    return tags


def best_epoch(history: dict[str, list[float]]) -> int:
    """1-based epoch with the best validation recall@max(k) (lowest val_loss if none)."""
    values = history.get(contract.SELECTION_METRIC)
    if values and not all(math.isnan(v) for v in values):
        return int(np.nanargmax(values)) + 1
    values = history.get(contract.METRIC_VAL_LOSS) or history.get(contract.METRIC_LOSS)
    return int(np.nanargmin(values)) + 1


def log_summary(tracker: RunTracker, history: dict[str, list[float]]) -> int:
    """Logs the best epoch and each history metric's last and best-epoch value; returns best."""
    best = best_epoch(history)
    summary = {contract.BEST_EPOCH: best}
    for name in contract.history_metrics():
        values = history.get(name)
        if values:
            summary[contract.final_key(name)] = values[-1]
            summary[contract.best_key(name)] = values[best - 1]
    tracker.log_metrics(summary, step=len(history[contract.METRIC_LOSS]))
    return best
