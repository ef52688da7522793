"""Evaluate: exact test recall@k of the exported serving model, next to the baselines.

The model is queried through its serving signature (raw buyer features in, top-K product
ids out), so what is measured is exactly what would be served. Results go to the training
run in MLflow and to a JSON file.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import buyer_features, contract, evaluation, ingest
from trainer.tracking import RunTracker, read_run_info

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
TOP_K_FILE = "top_k.parquet"  # the served top-k of every test query, as evaluated


def load_serving_model(serving_dir: str):
    """Loads the exported model; returns its ``serving_default`` function."""
    return tf.saved_model.load(serving_dir).signatures["serving_default"]


def serve_top_k(
    serve, queries: pd.DataFrame, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the serving signature over raw query rows: (product ids, scores), best first."""
    names = list(serve.structured_input_signature[1].keys())
    ids, scores = [], []
    for start in range(0, len(queries), batch_size):
        part = queries.iloc[start : start + batch_size]
        inputs = {}
        for name in names:
            spec = serve.structured_input_signature[1][name]
            inputs[name] = tf.constant(
                part[name]
                .to_numpy()
                .astype(object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype),
                spec.dtype,
            )
        out = serve(**inputs)
        ids.append(out["product_ids"].numpy().astype(str))
        scores.append(out["scores"].numpy())
    return np.concatenate(ids), np.concatenate(scores)


def run_evaluation(
    model_dir: str, ingest_dir: str, output_dir: str, tracking_uri: str = ""
) -> dict[str, float]:
    """Test recall@k of the model and of every baseline, logged to the model's MLflow run.

    Args:
        model_dir: The train step's output (serving model and mlflow_run.json).
        ingest_dir: The ingest step's output (splits and catalog).
        output_dir: Where metrics.json is written.
        tracking_uri: MLflow tracking URI (defaults to the one training used).

    Returns:
        The metrics, named by the MLflow contract.
    """
    from trainer import config as cfg
    from trainer.train import CONFIG_FILE, SERVING_DIR, as_of_time, query_frame

    config = cfg.load_config(os.path.join(model_dir, CONFIG_FILE))

    run_info = read_run_info(model_dir)
    os.makedirs(output_dir, exist_ok=True)
    train = pd.read_parquet(ingest.split_path(ingest_dir, "train"))
    history = pd.concat([train, pd.read_parquet(ingest.split_path(ingest_dir, "eval"))])
    test = pd.read_parquet(ingest.split_path(ingest_dir, "test"))
    catalog = pd.read_parquet(os.path.join(ingest_dir, ingest.CATALOG_FILE))
    eval_set = evaluation.build_eval_set(test, train, catalog)
    k = max(contract.RECALL_KS)

    serve = load_serving_model(os.path.join(model_dir, SERVING_DIR))
    queries = query_frame(
        history,
        eval_set.buyers,
        as_of_time(history, test),
        config.history_length or buyer_features.DEFAULT_MAX_HISTORY,
    )
    product_ids, scores = serve_top_k(serve, queries)
    pd.DataFrame(
        {
            "buyer_id": eval_set.buyers,
            "product_ids": list(product_ids[:, :k]),
            "scores": list(scores[:, :k]),
        }
    ).to_parquet(os.path.join(output_dir, TOP_K_FILE))
    index = evaluation.catalog_index(catalog)
    top = np.vectorize(index.__getitem__, otypes=[np.int64])(product_ids[:, :k])
    metrics = {
        contract.test_recall_key(kk): v for kk, v in evaluation.recall_at_k(top, eval_set).items()
    }
    for baseline, recalls in evaluation.baseline_recalls(eval_set, history, catalog).items():
        for kk, v in recalls.items():
            metrics[contract.baseline_recall_key(baseline, kk)] = v
    metrics["test_pairs"] = float(eval_set.num_pairs)
    metrics["test_buyers"] = float(len(eval_set.buyers))

    tracker = RunTracker(
        tracking_uri or run_info["tracking_uri"] or "",
        run_info["experiment"],
        backlog_dir=output_dir,
    )
    tracker.resume(run_info["run_id"])
    tracker.log_metrics(metrics)
    tracker.finish("FINISHED")
    with open(os.path.join(output_dir, METRICS_FILE), "w", encoding="utf-8") as f:
        json.dump({"run_id": run_info["run_id"], "metrics": metrics}, f, indent=2)
    log.info("evaluate: %s", metrics)
    return metrics
