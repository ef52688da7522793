"""What each of a run's models recommends, on the test and the validation split.

The models are queried through their serving signature (raw buyer features in, top-K product
ids out), so what is measured is exactly what the exported models serve; with
``training.ranking_stage`` the ranking stage (trainer/rank) then re-ranks their candidates, is
kept or dropped on validation, and the run's recommendations are the two stages' lists.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract, inputs, layout, rank, retrieval, serving
from trainer.evaluate import uncertainty
from trainer.evaluate.data import EvaluationData, query_rows


@dataclasses.dataclass
class ServedLists:
    """A served model's top-k per query: catalog rows (-1: an empty slot), ids and scores."""

    rows: np.ndarray
    product_ids: np.ndarray
    scores: np.ndarray


def served_lists(serving_dir: str, queries: pd.DataFrame, catalog: pd.DataFrame) -> ServedLists:
    """A served model's top-k per query, through its serving signature."""
    k = max(contract.RECALL_KS)
    if not len(queries):
        empty = np.empty((0, k))
        return ServedLists(empty.astype(np.int64), empty.astype(str), empty.astype(np.float32))
    serve = serving.load_serving_model(serving_dir)
    product_ids, scores = serving.serve_top_k(serve, queries)
    index = retrieval.catalog_index(catalog)
    # An empty slot ("": the buyer's earlier items were excluded) is row -1, never a hit.
    rows = np.vectorize(lambda p: index.get(p, -1), otypes=[np.int64])(product_ids[:, :k])
    return ServedLists(rows, product_ids[:, :k], scores[:, :k])


@dataclasses.dataclass
class Scored:
    """Both splits' lists of a run's models, decided, ready for per-buyer rows.

    ``test`` / ``val``: scorer -> top-k catalog rows (``contract.SCORER_MODEL`` the run's
    recommendations: the two stages when the ranking stage was kept, else the retrieval
    stage; ``contract.SCORER_RETRIEVAL`` the retrieval stage alone when it was kept;
    ``contract.SCORER_SELECTED`` on test with ``training.refit``). ``top_k``: the model's test
    lists as (product ids, scores).
    """

    test_set: retrieval.EvalSet
    val_set: retrieval.EvalSet
    test: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    top_k: tuple[np.ndarray, np.ndarray]
    ranked: rank.Ranked | None = None


def _ranking_stage(
    config: cfg.ExperimentConfig,
    data: EvaluationData,
    val_set: retrieval.EvalSet,
    val_lists: ServedLists,
    test_set: retrieval.EvalSet,
    test_lists: ServedLists,
) -> rank.Ranked:
    """Fits the ranking stage on validation and ranks the test candidates (trainer/rank)."""
    window = rank.window_days(data.eval)
    sources = []
    for split, es, lists, before, targets in (
        ("val", val_set, val_lists, data.train, data.eval),
        ("test", test_set, test_lists, data.history, data.test),
    ):
        strong = retrieval.precomputed_top_k(data.strong, split, es.buyers, width=0)
        scores = retrieval.precomputed_top_k(data.strong, split, es.buyers, 0, "scores")
        name = next(iter(strong), None)
        candidates = rank.Candidates(
            es.buyers, lists.rows, lists.scores, strong.get(name), scores.get(name)
        )
        past = rank.history(before, data.catalog, inputs.as_of_time(before, targets), window)

        def frame_of(queries, c=candidates, past=past, es=es, split=split):
            frame = rank.candidate_frame(c.take(queries), past)
            if split == "val":
                frame = rank.with_labels(frame, [es.positives[q] for q in queries])
            return frame

        sources.append(frame_of)
    return rank.run_stage(sources[0], val_set, val_lists.rows, sources[1], len(test_set.buyers))


def scored_lists(model_dir: str, config: cfg.ExperimentConfig, data: EvaluationData) -> Scored:
    """Serves the run's models on both splits and, with ``training.ranking_stage``, ranks them.

    Test: the exported model (the refit one with ``training.refit``) and the model selected
    on eval before the refit (``contract.SCORER_SELECTED``), buyer features as of the test
    split's start from train + eval. Validation: the model that never saw the eval split
    (``serving_selected`` with ``training.refit``), queried as training validated it, with
    buyer features from train rows only.
    """
    exclude_seen = config.training.exclude_seen
    test_set = retrieval.build_eval_set(
        data.test, data.train, data.catalog, seen=data.history if exclude_seen else None
    )
    test_queries = query_rows(config, data, test_set)
    served = served_lists(layout.serving_path(model_dir), test_queries, data.catalog)
    test = {contract.SCORER_MODEL: served.rows}
    if config.training.refit:
        selected = served_lists(layout.selected_serving_path(model_dir), test_queries, data.catalog)
        test[contract.SCORER_SELECTED] = selected.rows
    val_set, val_queries = inputs.validation_queries(config, data.train, data.eval, data.catalog)
    chosen = (
        layout.selected_serving_path(model_dir)
        if config.training.refit
        else layout.serving_path(model_dir)
    )
    val_served = served_lists(chosen, val_queries, data.catalog)
    val = {contract.SCORER_MODEL: val_served.rows}
    top_k = (served.product_ids, served.scores)
    ranked = None
    if config.training.ranking_stage and len(val_set.buyers) and len(test_set.buyers):
        ranked = _ranking_stage(config, data, val_set, val_served, test_set, served)
        if ranked.kept:
            test[contract.SCORER_RETRIEVAL] = served.rows
            test[contract.SCORER_MODEL] = ranked.test_top
            val[contract.SCORER_RETRIEVAL] = val_served.rows
            val[contract.SCORER_MODEL] = ranked.val_top
            ids = data.catalog[contract.PRODUCT_ID].to_numpy().astype(str)
            top = ranked.test_top
            top_k = (np.where(top >= 0, ids[np.maximum(top, 0)], ""), ranked.test_scores)
    return Scored(test_set, val_set, test, val, top_k, ranked)


def ranking_metrics(
    scored: Scored, test_rows: dict[str, pd.DataFrame]
) -> tuple[dict[str, float], dict[str, str]]:
    """The ranking stage's figures (``contract.ranking_*``) and its ``ranking_stage`` tag."""
    ranked = scored.ranked
    if ranked is None:
        return {}, {}
    metrics = {contract.RANKING_KEPT: float(ranked.kept)}
    val_recall = ranked.record.get("val_recall", {})
    for k in contract.RECALL_KS if val_recall else ():
        metrics[contract.ranking_val_recall_key(k)] = val_recall["ranking"][k]
        metrics[contract.retrieval_val_recall_key(k)] = val_recall["retrieval"][k]
    if ranked.kept:
        metrics.update(uncertainty.ranking_lift(test_rows))
    verdict = "kept" if ranked.kept else "dropped"
    return metrics, {contract.TAG_RANKING: f"{verdict}: {ranked.reason}"}
