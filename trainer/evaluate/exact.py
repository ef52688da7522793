"""Evaluate: exact test recall@k of the exported serving model, next to the baselines.

The model is queried through its serving signature (raw buyer features in, top-K product
ids out), so what is measured is exactly what would be served. With ``training.refit`` the
exported model is the one refit on train + eval (``test_recall_at_<k>``); the model selected
on eval before the refit is measured the same way (``selected_test_recall_at_<k>``). With
``training.ranking_stage`` kept (``trainer.evaluate.scored``, trainer/rank) the run's
recommendations are the two stages' lists (``test_recall_at_<k>``) and the retrieval stage
alone is ``retrieval_test_recall_at_<k>``, with the stage's lift over it. With
``training.exclude_seen`` the pairs of a buyer's earlier items are not evaluated, the model
and the baselines never recommend them, and the own-history baseline is not logged.

Every figure comes from per-buyer rows (``trainer.retrieval.per_buyer``): for the test split
(every model and baseline) and for the validation split (the model chosen on validation, which
never saw it, and the baselines on train only). Both tables go to the output folder and to the
run's artifacts (``evaluation/per_buyer_{test,val}.parquet``), and a paired bootstrap over
their buyers gives the intervals, lifts and verdicts (``trainer.evaluate.uncertainty``); the
run is tagged with its evaluation protocol (``trainer.inputs.protocol``: data digest, split,
catalog size, protocol version, and their key). The test rows also carry the slices' band
columns, and ``trainer.evaluate.slices`` turns them into recall, lift and interval per slice
(repeat / new targets, activity and popularity bands) and the top-k lists into beyond-accuracy
figures. The metrics and tags go to the training run in MLflow and to a JSON file.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract, cost, inputs, layout, rank, retrieval, tracking
from trainer.evaluate import slices, uncertainty
from trainer.evaluate.data import EvaluationData, query_rows  # noqa: F401  (query_rows: a face of this module)
from trainer.evaluate.scored import Scored, ranking_metrics, scored_lists
from trainer.tracking import RunTracker, read_run_info

log = logging.getLogger(__name__)


def write_top_k(path: str, buyers: np.ndarray, product_ids: np.ndarray, scores: np.ndarray):
    """The run's lists of record (``contract.TOP_K_FILE``): buyer, product ids, scores."""
    pd.DataFrame(
        {
            contract.BUYER_ID: buyers,
            "product_ids": list(product_ids),
            "scores": list(scores),
        }
    ).to_parquet(path)


def score_split(
    found: dict[str, np.ndarray],
    eval_set: retrieval.EvalSet,
    before: pd.DataFrame,
    catalog: pd.DataFrame,
    exclude_seen: bool,
    pop: retrieval.Popularity | None = None,
    tops: dict[str, np.ndarray] | None = None,
    strong: dict[str, np.ndarray] | None = None,
) -> dict[str, pd.DataFrame]:
    """Per-buyer rows of each model's lists and each applicable baseline on one split.

    Args:
        found: Scorer name -> its top-k catalog rows per query (the models' lists).
        eval_set: The split's pairs.
        before: The interactions before the split (the baselines' data; a pair found there
            is a repeat target; a buyer's earlier purchase days).
        catalog: The retrieval catalog.
        exclude_seen: ``training.exclude_seen``.
        pop: The catalog's popularity by train interactions: the rows get the slices' band
            columns (``contract.band_columns``); None: without them.
        tops: Filled with each scorer's top-k catalog rows when given (beyond accuracy).
        strong: The strong baselines' top-k rows for the split's queries (computed by ingest).
    """
    seen = retrieval.seen_rows(eval_set, before, catalog)
    bands = {}
    if pop is not None:
        bands = {"band": pop.band, "earlier_days": retrieval.earlier_days(eval_set, before)}
    found = dict(found)
    k = max(contract.RECALL_KS)
    found.update(retrieval.baseline_top_k(eval_set, before, catalog, k, exclude_seen))
    found.update(strong or {})
    if tops is not None:
        tops.update(found)
    return {
        name: retrieval.per_buyer_rows(top, eval_set, seen, name, **bands)
        for name, top in found.items()
    }


def metrics_on_test(rows: dict[str, pd.DataFrame], eval_set: retrieval.EvalSet) -> dict[str, float]:
    """The contract's test metrics from the test split's per-buyer rows."""
    names = {
        contract.SCORER_MODEL: contract.test_recall_key,
        contract.SCORER_SELECTED: contract.selected_test_recall_key,
        contract.SCORER_RETRIEVAL: contract.retrieval_test_recall_key,
    }
    results = {}
    for scorer, frame in rows.items():
        key = names.get(scorer) or (lambda k, b=scorer: contract.baseline_recall_key(b, k))
        results.update({key(k): v for k, v in retrieval.recalls_of(frame).items()})
    results[contract.TEST_PAIRS] = float(eval_set.num_pairs)
    results[contract.TEST_BUYERS] = float(len(eval_set.buyers))
    return results


def rows_on_test(
    model_dir: str,
    config: cfg.ExperimentConfig,
    data: EvaluationData,
    output_dir: str,
    tops: dict[str, np.ndarray] | None = None,
    scored: Scored | None = None,
) -> tuple[dict[str, pd.DataFrame], retrieval.EvalSet]:
    """Per-buyer test rows of the run's models (``scored_lists``) and the baselines.

    The top-k file holds the run's recommendations (``contract.SCORER_MODEL``'s lists). The
    rows carry the slices' band columns (popularity by train interactions); ``tops``, when
    given, is filled with each scorer's top-k lists.
    """
    scored = scored or scored_lists(model_dir, config, data)
    write_top_k(layout.top_k_path(output_dir), scored.test_set.buyers, *scored.top_k)
    rows = score_split(
        scored.test,
        scored.test_set,
        data.history,
        data.catalog,
        config.training.exclude_seen,
        retrieval.popularity(data.train, data.catalog),
        tops,
        retrieval.precomputed_top_k(data.strong, "test", scored.test_set.buyers),
    )
    return rows, scored.test_set


def rows_on_validation(
    config: cfg.ExperimentConfig, data: EvaluationData, scored: Scored
) -> dict[str, pd.DataFrame]:
    """Per-buyer validation rows of the run's models and of the baselines (train only).

    The model is the one that never saw the eval split; with the ranking stage kept, its
    lists are the cross-fitted ones (each buyer ranked by a ranker fit on other buyers).
    """
    return score_split(
        scored.val,
        scored.val_set,
        data.train,
        data.catalog,
        config.training.exclude_seen,
        pop=retrieval.popularity(data.train, data.catalog),
        strong=retrieval.precomputed_top_k(data.strong, "val", scored.val_set.buyers),
    )


def replay_training_backlog(model_dir: str, run_info: dict, tracking_uri: str = "") -> None:
    """Sends what training could not send to MLflow, before adding the test retrieval.

    A tracking outage is not the evaluation's failure: what is still unsent stays in the
    backlog (``python -m trainer replay`` sends it later) and the step goes on.
    """
    if not tracking.unsent_lines(model_dir):  # its backlog, or its journal if it was killed
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


def _cost(
    timer: cost.StepTimer, prices: cost.PriceTable, output_dir: str, folders: list[str]
) -> tuple[dict[str, float], dict[str, str]]:
    """Records the evaluate step; the run's cost from every step's record and this one."""
    own = timer.stop(output_dir)
    return cost.run_cost(cost.read_records([f for f in folders if f]) + [own], prices)


def _log_to_run(
    model_dir: str,
    run_info: dict,
    tracking_uri: str,
    output_dir: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    tables: list[str],
) -> None:
    """Sends the evaluation to the training's run (its backlog first) and ends the run."""
    replay_training_backlog(model_dir, run_info, tracking_uri)
    tracker = RunTracker(
        tracking_uri or run_info["tracking_uri"] or "",
        run_info["experiment"],
        backlog_dir=output_dir,
    )
    tracker.resume(run_info["run_id"])
    tracker.log_metrics(metrics)
    tracker.set_tags(tags)
    for path in tables:
        tracker.log_artifact(path, contract.EVALUATION_ARTIFACT_DIR)
    tracker.finish(contract.STATUS_FINISHED)


def write_per_buyer(output_dir: str, test_rows: dict, val_rows: dict) -> list[str]:
    """Writes the test and validation per-buyer tables; returns their paths."""
    return [
        retrieval.write_rows(list(test_rows.values()), layout.per_buyer_path(output_dir, "test")),
        retrieval.write_rows(list(val_rows.values()), layout.per_buyer_path(output_dir, "eval")),
    ]


def run_evaluation(
    model_dir: str,
    ingest_dir: str,
    output_dir: str,
    tracking_uri: str = "",
    transform_dir: str = "",
    prices: dict | None = None,
) -> dict[str, float]:
    """Test recall@k of the model and of every baseline, logged to the model's MLflow run.

    The run also gets its cost (``trainer.cost.run_cost``): the step records of ingest,
    transform (``transform_dir``) and training found in their folders, and this step's own.

    Args:
        model_dir: The train step's output (serving model and mlflow_run.json).
        ingest_dir: The ingest step's output (splits and catalog).
        output_dir: Where metrics.json, top_k.parquet and the per-buyer tables are written.
        tracking_uri: MLflow tracking URI (defaults to the one training used).
        transform_dir: The transform step's output ("": its cost is not logged).
        prices: Overrides of the packaged price table (an environment file's ``prices:``).

    Returns:
        The metrics, named by the MLflow contract.

    Raises:
        trainer.cost.PriceError: ``prices`` is invalid (checked before anything is evaluated).
    """
    price_table = cost.load_prices(prices)
    timer = cost.StepTimer("evaluate")
    run_info = read_run_info(model_dir)
    os.makedirs(output_dir, exist_ok=True)
    config = cfg.load_config(layout.config_path(model_dir))
    data = EvaluationData.load(ingest_dir)
    tops: dict[str, np.ndarray] = {}
    scored = scored_lists(model_dir, config, data)
    test_rows, eval_set = rows_on_test(model_dir, config, data, output_dir, tops, scored)
    val_rows = rows_on_validation(config, data, scored)
    results = metrics_on_test(test_rows, eval_set)
    results.update(slices.slice_metrics(test_rows))
    results.update(slices.beyond_metrics(tops, retrieval.popularity(data.train, data.catalog)))
    intervals, tags = uncertainty.intervals_on_test(test_rows)
    tags.update(inputs.protocol_tags(config, [data.train, data.eval, data.test], data.catalog))
    results.update(intervals)
    results.update(uncertainty.intervals_on_validation(val_rows))
    ranking, ranking_tags = ranking_metrics(scored, test_rows)
    results.update(ranking)
    tags.update(ranking_tags)
    tables = write_per_buyer(output_dir, test_rows, val_rows)
    if scored.ranked is not None:
        ranking_dir = os.path.join(output_dir, contract.RANKING_DIR)
        tables += rank.save(scored.ranked, ranking_dir)

    cost_metrics, cost_tags = _cost(
        timer, price_table, output_dir, [ingest_dir, transform_dir, model_dir]
    )
    _log_to_run(
        model_dir, run_info, tracking_uri, output_dir, {**results, **cost_metrics},
        {**tags, **cost_tags}, tables,
    )  # fmt: skip
    with open(layout.metrics_path(output_dir), "w", encoding="utf-8") as f:
        json.dump({"run_id": run_info["run_id"], "metrics": results, "tags": tags}, f, indent=2)
    log.info("evaluate: %s", results)
    return results
