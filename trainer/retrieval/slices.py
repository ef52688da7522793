"""What the slices need from a split: popularity bands, earlier purchase days, beyond accuracy.

A product's popularity band and rank come from its train interactions
(``contract.POPULARITY_BANDS``); a buyer's activity is its number of distinct days (UTC) with
a purchase before the split. The beyond-accuracy figures of a scorer's top-k lists: catalog
coverage, mean popularity rank of the recommended products and the share of tail products
(``contract.BEYOND_FIGURES``). NumPy and pandas only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trainer import contract
from trainer.retrieval.metrics import EvalSet, popularity_ranking

SECONDS_PER_DAY = 86_400


@dataclasses.dataclass(frozen=True)
class Popularity:
    """Per catalog row: its popularity rank (1: most train interactions) and band index."""

    rank: np.ndarray  # [catalog] int64, 1-based
    band: np.ndarray  # [catalog] int8: index into contract.POPULARITY_PARTS


def popularity(train: pd.DataFrame, catalog: pd.DataFrame) -> Popularity:
    """Each catalog product's popularity rank and band by its train interactions."""
    order = popularity_ranking(train, catalog)
    counts = catalog[contract.PRODUCT_ID].map(train[contract.PRODUCT_ID].value_counts())
    counts = counts.fillna(0).to_numpy(np.float64)[order]
    total = counts.sum()
    above = (np.cumsum(counts) - counts) / total if total else np.ones(len(counts))
    band_sorted = np.full(len(order), len(contract.POPULARITY_BANDS) - 1, np.int8)
    for i, (_, ends) in reversed(list(enumerate(contract.POPULARITY_BANDS[:-1]))):
        band_sorted[above < ends] = i
    if total:  # a product never bought in train is in the tail whatever its position
        band_sorted[counts == 0] = len(contract.POPULARITY_BANDS) - 1
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    band = np.empty(len(order), np.int8)
    band[order] = band_sorted
    return Popularity(rank, band)


def earlier_days(eval_set: EvalSet, before: pd.DataFrame) -> np.ndarray:
    """Per query: distinct days (UTC) its buyer bought anything on in ``before``."""
    days = before[contract.TIMESTAMP].to_numpy(np.int64) // SECONDS_PER_DAY
    per_buyer = pd.Series(days).groupby(before[contract.BUYER_ID].to_numpy()).nunique()
    found = pd.Series(eval_set.buyers).map(per_buyer).fillna(0)
    return found.to_numpy(np.int64)


def beyond_accuracy(
    top: np.ndarray, pop: Popularity, ks=contract.RECALL_KS
) -> dict[str, dict[int, float]]:
    """Figure -> k -> value of one scorer's top-k lists (empty slots, below 0, not counted).

    Args:
        top: Ranked catalog rows per query (queries x at least max(ks)).
        pop: The catalog's popularity (:func:`popularity`).
        ks: The cut-offs.
    """
    out: dict[str, dict[int, float]] = {f: {} for f in contract.BEYOND_FIGURES}
    tail = contract.POPULARITY_PARTS.index(contract.POPULARITY_TAIL)
    for k in ks:
        slots = top[:, :k].ravel()
        slots = slots[slots >= 0]
        if not len(slots):
            for figure in contract.BEYOND_FIGURES:
                out[figure][k] = float("nan")
            continue
        out[contract.BEYOND_COVERAGE][k] = len(np.unique(slots)) / len(pop.rank)
        out[contract.BEYOND_POPULARITY_RANK][k] = float(pop.rank[slots].mean())
        out[contract.BEYOND_TAIL_SHARE][k] = float((pop.band[slots] == tail).mean())
    return out
