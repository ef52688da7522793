"""Intervals and verdicts of one evaluation, from its per-buyer rows, named by the contract.

The test rows give a percentile interval of every scorer's test recall@k (``<metric>_ci_low``
/ ``_ci_high``), the model's absolute and relative lift over each baseline with intervals,
their Holm-adjusted p-values and the verdicts (tags ``verdict_vs_<baseline>[_at_<k>]``); the
validation rows give the interval of the chosen model's validation recall. One paired
bootstrap per split (``trainer.retrieval.bootstrap``), seeded by the contract.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer import contract, retrieval

KS = contract.RECALL_KS


def _arrays(rows: dict[str, pd.DataFrame]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(pairs per buyer, scorer -> hits at each k), every scorer on the same buyers."""
    first = next(iter(rows.values()))
    buyers = first[contract.BUYER_ID].to_numpy()
    for name, frame in rows.items():
        if not np.array_equal(frame[contract.BUYER_ID].to_numpy(), buyers):
            raise ValueError(f"per-buyer rows of {name!r} are not on the model's buyers")
    hits = {
        name: frame[[contract.hits_column(k) for k in KS]].to_numpy(np.int64)
        for name, frame in rows.items()
    }
    return first[contract.PAIRS].to_numpy(np.int64), hits


def _bootstrap(
    rows: dict[str, pd.DataFrame], baselines: tuple[str, ...] | None = None
) -> retrieval.BootstrapResult:
    pairs, hits = _arrays(rows)
    return retrieval.paired_bootstrap(
        pairs,
        hits,
        contract.SCORER_MODEL,
        KS,
        resamples=contract.BOOTSTRAP_RESAMPLES,
        seed=contract.BOOTSTRAP_SEED,
        confidence=contract.BOOTSTRAP_CONFIDENCE,
        baselines=baselines,
    )


def _with_interval(out: dict[str, float], key: str, estimate: retrieval.Estimate) -> None:
    out[key] = estimate.value
    out[contract.ci_low_key(key)] = estimate.low
    out[contract.ci_high_key(key)] = estimate.high


def _recall_key(scorer: str, k: int) -> str:
    if scorer == contract.SCORER_MODEL:
        return contract.test_recall_key(k)
    if scorer == contract.SCORER_SELECTED:
        return contract.selected_test_recall_key(k)
    if scorer == contract.SCORER_RETRIEVAL:
        return contract.retrieval_test_recall_key(k)
    return contract.baseline_recall_key(scorer, k)


def describe(result: retrieval.BootstrapResult, baselines: int) -> str:
    """The ``bootstrap`` tag: how the intervals and the verdicts were made."""
    return (
        f"paired over {result.buyers} buyers, {result.resamples} resamples, seed "
        f"{contract.BOOTSTRAP_SEED}, {result.confidence:.0%} percentile intervals; verdicts: "
        f"Holm over {len(KS)} k x {baselines} baselines"
    )


def intervals_on_test(rows: dict[str, pd.DataFrame]) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics (intervals, lifts, p-values) and verdict tags from the test split's rows.

    The selected model (``training.refit``) and the retrieval stage alone (a kept ranking
    stage) get their recall's interval; the comparisons are the model's against the baselines
    only.
    """
    result = _bootstrap(rows, tuple(n for n in rows if n not in contract.OWN_SCORERS))
    metrics: dict[str, float] = {}
    for scorer, by_k in result.recall.items():
        for k, estimate in by_k.items():
            _with_interval(metrics, _recall_key(scorer, k), estimate)
    tags = {contract.TAG_BOOTSTRAP: describe(result, len(result.comparisons))}
    for baseline, by_k in result.comparisons.items():
        for k, comparison in by_k.items():
            _with_interval(metrics, contract.lift_key(baseline, k), comparison.lift)
            _with_interval(metrics, contract.relative_lift_key(baseline, k), comparison.relative)
            metrics[contract.lift_p_holm_key(baseline, k)] = comparison.p_holm
            tags[contract.verdict_tag(baseline, k)] = comparison.verdict
        tags[contract.verdict_tag(baseline)] = by_k[max(KS)].verdict
    return metrics, tags


def intervals_on_validation(rows: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The chosen model's validation recall@k with its interval, from the validation rows."""
    result = _bootstrap(rows)
    metrics: dict[str, float] = {}
    for k, estimate in result.recall[contract.SCORER_MODEL].items():
        _with_interval(metrics, contract.chosen_val_recall_key(k), estimate)
    return metrics


def ranking_lift(rows: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The two stages' test recall@k minus the retrieval stage's alone, paired, with interval."""
    pair = {n: rows[n] for n in (contract.SCORER_MODEL, contract.SCORER_RETRIEVAL)}
    result = _bootstrap(pair, (contract.SCORER_RETRIEVAL,))
    metrics: dict[str, float] = {}
    for k, comparison in result.comparisons[contract.SCORER_RETRIEVAL].items():
        _with_interval(metrics, contract.ranking_lift_key(k), comparison.lift)
    return metrics
