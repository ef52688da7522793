"""Evaluate: exact test recall@k of the exported serving model, next to the baselines.

The model is queried through its serving signature (raw buyer features in, top-K product
ids out), so what is measured is exactly what would be served. With ``training.refit`` the
exported model is the one refit on train + eval (``test_recall_at_<k>``); the model selected
on eval before the refit is measured the same way (``selected_test_recall_at_<k>``). With
``training.exclude_seen`` the pairs of a buyer's earlier items are not evaluated, the model
and the baselines never recommend them, and the own-history baseline is not logged. Results go
to the training run in MLflow and to a JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract, inputs, layout, retrieval, serving, tracking
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


def query_rows(
    config: cfg.ExperimentConfig, data: EvaluationData, eval_set: retrieval.EvalSet
) -> pd.DataFrame:
    """The test buyers' raw features as of the test split's start, from earlier rows only."""
    return inputs.query_frame(
        data.history,
        eval_set.buyers,
        inputs.as_of_time(data.history, data.test),
        inputs.query_history_length(config, data.history),
    )


def model_recalls(
    serving_dir: str,
    data: EvaluationData,
    eval_set: retrieval.EvalSet,
    queries: pd.DataFrame,
    top_k_path: str | None = None,
) -> dict[int, float]:
    """Test recall@k of a served model; its top-k of every query goes to ``top_k_path``."""
    k = max(contract.RECALL_KS)
    serve = serving.load_serving_model(serving_dir)
    product_ids, scores = serving.serve_top_k(serve, queries)
    if top_k_path:
        pd.DataFrame(
            {
                contract.BUYER_ID: eval_set.buyers,
                "product_ids": list(product_ids[:, :k]),
                "scores": list(scores[:, :k]),
            }
        ).to_parquet(top_k_path)
    index = retrieval.catalog_index(data.catalog)
    # An empty slot ("": the buyer's earlier items were excluded) is row -1, never a hit.
    top = np.vectorize(lambda p: index.get(p, -1), otypes=[np.int64])(product_ids[:, :k])
    return retrieval.recall_at_k(top, eval_set)


def baseline_recalls(
    data: EvaluationData, eval_set: retrieval.EvalSet, exclude_seen: bool = False
) -> dict[str, float]:
    """Test recall@k of every applicable heuristic baseline on the model's test pairs."""
    out = {}
    recalls = retrieval.baseline_recalls(
        eval_set, data.history, data.catalog, exclude_seen=exclude_seen
    )
    for baseline, by_k in recalls.items():
        for k, value in by_k.items():
            out[contract.baseline_recall_key(baseline, k)] = value
    return out


def recalls_on_test(model_dir: str, data: EvaluationData, output_dir: str) -> dict[str, float]:
    """Test recall@k of the exported model, the eval-selected one (refit) and the baselines.

    With ``training.refit`` the exported model is the refit one (``test_recall_at_<k>``) and
    the model selected on eval before it is logged as ``selected_test_recall_at_<k>``; the
    top-k file holds the exported model's lists.
    """
    config = cfg.load_config(layout.config_path(model_dir))
    exclude_seen = config.training.exclude_seen
    eval_set = retrieval.build_eval_set(
        data.test, data.train, data.catalog, seen=data.history if exclude_seen else None
    )
    queries = query_rows(config, data, eval_set)
    served = model_recalls(
        layout.serving_path(model_dir), data, eval_set, queries, layout.top_k_path(output_dir)
    )
    results = {contract.test_recall_key(k): v for k, v in served.items()}
    if config.training.refit:
        selected = model_recalls(layout.selected_serving_path(model_dir), data, eval_set, queries)
        results.update({contract.selected_test_recall_key(k): v for k, v in selected.items()})
    results.update(baseline_recalls(data, eval_set, exclude_seen))
    results[contract.TEST_PAIRS] = float(eval_set.num_pairs)
    results[contract.TEST_BUYERS] = float(len(eval_set.buyers))
    return results


def replay_training_backlog(model_dir: str, run_info: dict, tracking_uri: str = "") -> None:
    """Sends what training could not send to MLflow, before adding the test retrieval.

    A tracking outage is not the evaluation's failure: what is still unsent stays in the
    backlog (``python -m trainer replay`` sends it later) and the step goes on.
    """
    if not run_info.get("backlog") or not os.path.exists(run_info["backlog"]):
        return
    try:
        result = tracking.replay(model_dir, tracking_uri)
    except Exception as err:  # an outage is logged and kept for later; anything else raises
        if not tracking.is_transient(err):
            raise
        log.error(
            "training's MLflow backlog is still unsent (%s); run `python -m trainer replay %s` "
            "later",
            err,
            model_dir,
        )
        return
    tracking.update_run_info(model_dir, result)
    run_info.update(read_run_info(model_dir))


def run_evaluation(
    model_dir: str, ingest_dir: str, output_dir: str, tracking_uri: str = ""
) -> dict[str, float]:
    """Test recall@k of the model and of every baseline, logged to the model's MLflow run.

    Args:
        model_dir: The train step's output (serving model and mlflow_run.json).
        ingest_dir: The ingest step's output (splits and catalog).
        output_dir: Where retrieval.json and top_k.parquet are written.
        tracking_uri: MLflow tracking URI (defaults to the one training used).

    Returns:
        The metrics, named by the MLflow contract.
    """
    run_info = read_run_info(model_dir)
    os.makedirs(output_dir, exist_ok=True)
    results = recalls_on_test(model_dir, EvaluationData.load(ingest_dir), output_dir)

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
