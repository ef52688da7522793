"""Where each step's files live inside its output folder (standard library only).

Every step writes into one folder and every later step reads it back through these paths,
so the layout is spelled once (file names come from ``trainer/contract.py``):

    ingest     {split}.parquet, {split}.tfrecord.gz, catalog.parquet, schema.pbtxt, stats.json
    transform  the TFTransformOutput, plus transformed/{split}-*.tfrecord.gz
    train      serving/ (the SavedModel), [serving_selected/ with refit], mlflow_model/ (the
               SavedModel as an MLflow pyfunc model), experiment.yaml, mlflow_run.json
    evaluate   metrics.json, top_k.parquet, per_buyer_test.parquet, per_buyer_val.parquet

Paths are joined with ``os.path.join``, which keeps ``gs://`` URIs intact.
"""

from __future__ import annotations

import os

from trainer import contract

TFRECORD_SUFFIX = ".tfrecord.gz"


def split_path(ingest_dir: str, split: str, ext: str = "parquet") -> str:
    """One split's file in an ingest folder: ``parquet`` (frames) or ``tfrecord`` (examples)."""
    suffix = TFRECORD_SUFFIX if ext == "tfrecord" else f".{ext}"
    return os.path.join(ingest_dir, f"{split}{suffix}")


def catalog_path(ingest_dir: str) -> str:
    """The retrieval catalog (one row per product seen in train)."""
    return os.path.join(ingest_dir, contract.CATALOG_FILE)


def schema_path(ingest_dir: str) -> str:
    """The raw feature schema (TFMD text proto)."""
    return os.path.join(ingest_dir, contract.SCHEMA_FILE)


def strong_baselines_path(ingest_dir: str, record: bool = False) -> str:
    """The strong baselines' lists (or, with ``record``, their tuning record) of an ingest."""
    name = contract.STRONG_BASELINES_RECORD if record else contract.STRONG_BASELINES_FILE
    return os.path.join(ingest_dir, name)


def stats_path(ingest_dir: str) -> str:
    """Ingest's counts: rows read, dropped per reason, kept per split."""
    return os.path.join(ingest_dir, contract.STATS_FILE)


def transformed_prefix(transform_dir: str, split: str) -> str:
    """Prefix of one split's transformed example shards (what the Beam writer is given)."""
    return os.path.join(transform_dir, contract.TRANSFORMED_DIR, split)


def transformed_pattern(transform_dir: str, split: str) -> str:
    """File pattern of one split's transformed example shards."""
    return f"{transformed_prefix(transform_dir, split)}-*{TFRECORD_SUFFIX}"


def serving_path(model_dir: str) -> str:
    """The exported serving SavedModel in a train folder."""
    return os.path.join(model_dir, contract.SERVING_DIR)


def selected_serving_path(model_dir: str) -> str:
    """With ``training.refit``: the eval-selected model, before its refit on train + eval."""
    return os.path.join(model_dir, contract.SELECTED_SERVING_DIR)


def mlflow_model_path(model_dir: str) -> str:
    """The served model as an MLflow pyfunc model (MLmodel, signature, the SavedModel)."""
    return os.path.join(model_dir, contract.MLFLOW_MODEL_DIR)


def config_path(model_dir: str) -> str:
    """The resolved experiment config a model was trained with."""
    return os.path.join(model_dir, contract.CONFIG_FILE)


def checkpoint_path(model_dir: str, phase: str) -> str:
    """Training's per-epoch checkpoints of one phase (``fit``, ``refit``) in a train folder."""
    return os.path.join(model_dir, contract.CHECKPOINT_DIR, phase)


def metrics_path(evaluate_dir: str) -> str:
    """The evaluate step's metrics (model and baselines)."""
    return os.path.join(evaluate_dir, contract.METRICS_FILE)


def top_k_path(evaluate_dir: str) -> str:
    """The served top-k of every evaluated query."""
    return os.path.join(evaluate_dir, contract.TOP_K_FILE)


def per_buyer_path(evaluate_dir: str, split: str) -> str:
    """One evaluated split's per-buyer rows (``split``: ``"test"`` or ``"eval"``)."""
    names = {"test": contract.PER_BUYER_TEST_FILE, "eval": contract.PER_BUYER_VAL_FILE}
    return os.path.join(evaluate_dir, names[split])
