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


def rung_until(config: cfg.ExperimentConfig, rung: int) -> int:
    """The epoch a halving rung before the last trains up to; 0 for the last rung or none."""
    rungs = config.rungs if rung else ()
    return rungs[rung - 1].epochs if 0 < rung < len(rungs) else 0


def rung_tags(history: dict[str, list[float]], rung: int, rungs: int) -> dict[str, str]:
    """A halving trial's tags after a rung: the rung, its epochs so far, its value there.

    The value is the best epoch's validation recall so far (what the trial would be kept at),
    the one the selection between rungs ranks by.
    """
    values = [v for v in history.get(contract.SELECTION_METRIC, []) if not math.isnan(v)]
    last = rung == rungs
    return {
        contract.TAG_HALVING_RUNG: str(rung),
        contract.TAG_HALVING_RUNGS: str(rungs),
        contract.TAG_HALVING_EPOCHS: str(len(history[contract.METRIC_LOSS])),
        contract.halving_rung_value_tag(rung): f"{max(values):.6f}" if values else "nan",
        contract.TAG_HALVING_STATUS: (
            contract.HALVING_COMPLETED if last else contract.HALVING_TRAINED
        ),
    }
