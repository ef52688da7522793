"""Evaluate: exact test recall@k of the exported serving model, next to the baselines.

The model is queried through its serving signature (raw buyer features in, top-K product
ids out), so what is measured is exactly what would be served. Results go to the training
run in MLflow and to a JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import pandas as pd

from trainer import buyer_features, contract, layout, serving, tracking_backlog, tracking_send
from trainer import config as cfg
from trainer import retrieval_metrics as metrics
from trainer.tracking import RunTracker, read_run_info

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EvaluationData:
    """The frames evaluation reads from the ingest folder."""

    train: pd.DataFrame
    history: pd.DataFrame  # train and eval: everything before the test split
    test: pd.DataFrame
    catalog: pd.DataFrame

    @classmethod
    def load(cls, ingest_dir: str) -> EvaluationData:
        """Reads the splits and the catalog of an ingest folder."""
        train = pd.read_parquet(layout.split_path(ingest_dir, "train"))
        history = pd.concat([train, pd.read_parquet(layout.split_path(ingest_dir, "eval"))])
        test = pd.read_parquet(layout.split_path(ingest_dir, "test"))
        return cls(train, history, test, pd.read_parquet(layout.catalog_path(ingest_dir)))


def model_recalls(
    model_dir: str, data: EvaluationData, eval_set: metrics.EvalSet, top_k_path: str
) -> dict[str, float]:
    """Test recall@k of the served model; its top-k of every query goes to ``top_k_path``.

    The queries are the test buyers' raw features as of the test split's start, computed
    from the interactions before it only.
    """
    config = cfg.load_config(layout.config_path(model_dir))
    k = max(contract.RECALL_KS)
    queries = buyer_features.query_frame(
        data.history,
        eval_set.buyers,
        buyer_features.as_of_time(data.history, data.test),
        config.history_length,
    )
    serve = serving.load_serving_model(layout.serving_path(model_dir))
    product_ids, scores = serving.serve_top_k(serve, queries)
    pd.DataFrame(
        {
            contract.BUYER_ID: eval_set.buyers,
            "product_ids": list(product_ids[:, :k]),
            "scores": list(scores[:, :k]),
        }
    ).to_parquet(top_k_path)
    index = metrics.catalog_index(data.catalog)
    top = np.vectorize(index.__getitem__, otypes=[np.int64])(product_ids[:, :k])
    recalls = metrics.recall_at_k(top, eval_set)
    return {contract.test_recall_key(kk): v for kk, v in recalls.items()}


def baseline_recalls(data: EvaluationData, eval_set: metrics.EvalSet) -> dict[str, float]:
    """Test recall@k of every heuristic baseline on the model's test pairs."""
    out = {}
    for baseline, recalls in metrics.baseline_recalls(eval_set, data.history, data.catalog).items():
        for k, value in recalls.items():
            out[contract.baseline_recall_key(baseline, k)] = value
    return out


def replay_training_backlog(model_dir: str, run_info: dict, tracking_uri: str = "") -> None:
    """Sends what training could not send to MLflow, before adding the test metrics.

    A tracking outage is not the evaluation's failure: what is still unsent stays in the
    backlog (``python -m trainer replay`` sends it later) and the step goes on.
    """
    if not run_info.get("backlog") or not os.path.exists(run_info["backlog"]):
        return
    try:
        result = tracking_backlog.replay(model_dir, tracking_uri)
    except Exception as err:  # an outage is logged and kept for later; anything else raises
        if not tracking_send.is_transient(err):
            raise
        log.error(
            "training's MLflow backlog is still unsent (%s); run `python -m trainer replay %s` "
            "later",
            err,
            model_dir,
        )
        return
    tracking_backlog.update_run_info(model_dir, result)
    run_info.update(read_run_info(model_dir))


def run_evaluation(
    model_dir: str, ingest_dir: str, output_dir: str, tracking_uri: str = ""
) -> dict[str, float]:
    """Test recall@k of the model and of every baseline, logged to the model's MLflow run.

    Args:
        model_dir: The train step's output (serving model and mlflow_run.json).
        ingest_dir: The ingest step's output (splits and catalog).
        output_dir: Where metrics.json and top_k.parquet are written.
        tracking_uri: MLflow tracking URI (defaults to the one training used).

    Returns:
        The metrics, named by the MLflow contract.
    """
    run_info = read_run_info(model_dir)
    os.makedirs(output_dir, exist_ok=True)
    data = EvaluationData.load(ingest_dir)
    eval_set = metrics.build_eval_set(data.test, data.train, data.catalog)
    results = model_recalls(model_dir, data, eval_set, layout.top_k_path(output_dir))
    results.update(baseline_recalls(data, eval_set))
    results[contract.TEST_PAIRS] = float(eval_set.num_pairs)
    results[contract.TEST_BUYERS] = float(len(eval_set.buyers))

    replay_training_backlog(model_dir, run_info, tracking_uri)
    tracker = RunTracker(
        tracking_uri or run_info["tracking_uri"] or "",
        run_info["experiment"],
        backlog_dir=output_dir,
    )
    tracker.resume(run_info["run_id"])
    tracker.log_metrics(results)
    tracker.finish(contract.STATUS_FINISHED)
    with open(layout.metrics_path(output_dir), "w", encoding="utf-8") as f:
        json.dump({"run_id": run_info["run_id"], "metrics": results}, f, indent=2)
    log.info("evaluate: %s", results)
    return results
