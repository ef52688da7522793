"""The MLflow contract: every param, tag and metric name a run carries, defined once.

The trainer writes these names and the report reads them; neither spells them out itself.
This module imports nothing heavy so a reporting-only install can use it.
"""

from __future__ import annotations

# Recall is measured at these cut-offs everywhere (validation, test, baselines, report).
RECALL_KS: tuple[int, ...] = (10, 50, 100)

# Params every run carries (the rest of the resolved config is flattened beside them).
PARAM_EPOCHS = "epochs"
PARAM_BATCH_SIZE = "batch_size"
PARAM_LEARNING_RATE = "learning_rate"
PARAM_OPTIMIZER = "optimizer"
PARAM_EMBEDDING_DIM = "embedding_dim"
PARAM_FEATURE_CONFIG_ID = "feature_config_id"
PARAM_MODEL_CONFIG_ID = "model_config_id"
PARAM_DATASET_ID = "dataset_id"
PARAM_SEED = "seed"

# Tags.
TAG_FEATURE_CONFIG_NAME = "feature_config_name"
TAG_MODEL_CONFIG_NAME = "model_config_name"
TAG_DATASET_NAME = "dataset_name"
TAG_MODEL_TYPE = "model_type"
TAG_PIPELINE_JOB = "kfp.pipeline_job"
TAG_PIPELINE_TASK = "kfp.task"
TAG_TRACKING_DEGRADED = "tracking_degraded"
MODEL_TYPE_TWO_TOWER = "two_tower_retrieval"

# Per-epoch history metrics (step = epoch).
METRIC_LOSS = "loss"
METRIC_VAL_LOSS = "val_loss"
BEST_EPOCH = "best_epoch"

# Baselines evaluated on the same test split as the model.
BASELINE_POPULAR = "popular"
BASELINE_OWN_HISTORY = "own_history"
BASELINES: tuple[str, ...] = (BASELINE_POPULAR, BASELINE_OWN_HISTORY)


def val_recall_key(k: int) -> str:
    """Per-epoch validation recall metric name."""
    return f"val_recall_at_{k}"


def test_recall_key(k: int) -> str:
    """Test-split recall of the model."""
    return f"test_recall_at_{k}"


def baseline_recall_key(baseline: str, k: int) -> str:
    """Test-split recall of a heuristic baseline, logged into the model's run."""
    return f"baseline_{baseline}_recall_at_{k}"


def final_key(metric: str) -> str:
    """Last-epoch value of a history metric."""
    return f"final_{metric}"


def best_key(metric: str) -> str:
    """Value of a history metric at the best epoch."""
    return f"best_{metric}"


def history_metrics() -> list[str]:
    """The metrics logged once per epoch."""
    return [METRIC_LOSS, METRIC_VAL_LOSS] + [val_recall_key(k) for k in RECALL_KS]


# The metric the report ranks by unless told otherwise.
DEFAULT_RANK_METRIC = test_recall_key(100)
