"""Retrieval metrics on plain arrays: exact top-k, micro-averaged recall@k, the baselines.

recall@k is micro-averaged over the distinct (buyer, product) pairs of the evaluated split
whose buyer and product were both seen in train: the share of those pairs whose product is
in that buyer's top k over the full catalog. Every scorer (the model, most-popular, the
buyer's own history) is measured by the same function on the same pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trainer import contract


@dataclasses.dataclass
class EvalSet:
    """The queries of one split and the catalog rows each must retrieve."""

    buyers: np.ndarray  # buyer ids, one per query
    positives: list[np.ndarray]  # per query: catalog row indices bought in the split
    num_pairs: int


def catalog_index(catalog: pd.DataFrame) -> dict[str, int]:
    """Catalog row index per product id."""
    return {pid: i for i, pid in enumerate(catalog[contract.PRODUCT_ID])}


def build_eval_set(
    split: pd.DataFrame,
    train: pd.DataFrame,
    catalog: pd.DataFrame,
    seen: pd.DataFrame | None = None,
) -> EvalSet:
    """Distinct (buyer, product) pairs of a split, buyers and products seen in train.

    Args:
        split: The evaluated split.
        train: The train split (which buyers are known).
        catalog: The retrieval catalog.
        seen: With ``training.exclude_seen``: the interactions before the split; a pair found
            there is left out (its product is excluded from that buyer's top-k, so only new
            items are evaluated).
    """
    index = catalog_index(catalog)
    seen_buyers = set(train[contract.BUYER_ID])
    pairs = split[[contract.BUYER_ID, contract.PRODUCT_ID]].drop_duplicates()
    known = pairs[contract.BUYER_ID].isin(seen_buyers) & pairs[contract.PRODUCT_ID].isin(index)
    pairs = pairs[known]
    if seen is not None:
        earlier = pd.MultiIndex.from_frame(seen[[contract.BUYER_ID, contract.PRODUCT_ID]])
        pairs = pairs[~pd.MultiIndex.from_frame(pairs).isin(earlier)]
    pairs = pairs.assign(row=pairs[contract.PRODUCT_ID].map(index).astype(np.int64))
    grouped = pairs.groupby(contract.BUYER_ID, sort=True)["row"]
    buyers = np.array(list(grouped.groups.keys()), dtype=object)
    positives = [np.sort(rows.to_numpy()) for _, rows in grouped]
    return EvalSet(buyers=buyers, positives=positives, num_pairs=len(pairs))


def recall_at_k(top: np.ndarray, eval_set: EvalSet, ks=contract.RECALL_KS) -> dict[int, float]:
    """Micro-averaged recall@k of ranked catalog rows ``top`` (queries x max(ks)).

    A row index below 0 is an empty slot (an excluded product) and never a hit.
    """
    if eval_set.num_pairs == 0:
        return {k: float("nan") for k in ks}
    # A list shorter than k (a catalog smaller than k) is the whole catalog: recall@k counts it.
    if top.shape[0] != len(eval_set.positives):
        raise ValueError(f"top has {top.shape[0]} rows for {len(eval_set.positives)} queries")
    # One vectorised membership test: encode (query, catalog row) pairs as single integers.
    width = (
        int(max(top.max(initial=0), max((p.max(initial=0) for p in eval_set.positives), default=0)))
        + 1
    )
    query_of_positive = np.repeat(
        np.arange(len(eval_set.positives)), [len(p) for p in eval_set.positives]
    )
    positives = query_of_positive * width + np.concatenate(eval_set.positives)
    found = np.isin(np.arange(top.shape[0])[:, None] * width + top, positives) & (top >= 0)
    hits = {k: int(found[:, :k].sum()) for k in ks}
    return {k: hits[k] / eval_set.num_pairs for k in ks}


def popularity_ranking(history: pd.DataFrame, catalog: pd.DataFrame) -> np.ndarray:
    """Catalog rows ordered by interaction count in ``history`` (ties: catalog order)."""
    counts = history[contract.PRODUCT_ID].value_counts()
    popularity = catalog[contract.PRODUCT_ID].map(counts).fillna(0).to_numpy()
    return np.argsort(-popularity, kind="stable")


def seen_rows(eval_set: EvalSet, history: pd.DataFrame, catalog: pd.DataFrame) -> list[np.ndarray]:
    """Per query, the catalog rows of the products its buyer has in ``history``."""
    index = catalog_index(catalog)
    known = history[history[contract.PRODUCT_ID].isin(index)]
    rows = known[contract.PRODUCT_ID].map(index).astype(np.int64)
    by_buyer = {b: np.unique(r.to_numpy()) for b, r in rows.groupby(known[contract.BUYER_ID])}
    empty = np.empty(0, np.int64)
    return [by_buyer.get(buyer, empty) for buyer in eval_set.buyers]


def most_popular_top_k(
    eval_set: EvalSet,
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    k: int,
    exclude_seen: bool = False,
) -> np.ndarray:
    """The top-k most popular products for every query.

    With ``exclude_seen`` each buyer's products in ``history`` are skipped (row -1 where
    fewer than k remain).
    """
    ranking = popularity_ranking(history, catalog)
    if not exclude_seen:
        return np.tile(ranking[:k], (len(eval_set.buyers), 1))
    k = min(k, len(catalog))
    top = np.full((len(eval_set.buyers), k), -1, np.int64)
    for i, seen in enumerate(seen_rows(eval_set, history, catalog)):
        head = ranking[: k + len(seen)]  # enough: at most len(seen) of them are skipped
        mine = head[~np.isin(head, seen)][:k]
        top[i, : len(mine)] = mine
    return top


def own_history_top_k(
    eval_set: EvalSet, history: pd.DataFrame, catalog: pd.DataFrame, k: int
) -> np.ndarray:
    """Each buyer's own earlier products (most bought first), filled up with popular ones.

    ``history`` holds only interactions before the evaluated split, so nothing leaks.
    """
    index = catalog_index(catalog)
    popular = popularity_ranking(history, catalog)
    pop_rank = np.empty_like(popular)
    pop_rank[popular] = np.arange(len(popular))
    queried = history[contract.BUYER_ID].isin(set(eval_set.buyers))
    known = history[history[contract.PRODUCT_ID].isin(index) & queried]
    counts = known.groupby([contract.BUYER_ID, contract.PRODUCT_ID]).size()
    counts = counts.rename("n").reset_index()
    counts["row"] = counts[contract.PRODUCT_ID].map(index).astype(np.int64)
    counts["pop"] = pop_rank[counts["row"].to_numpy()]
    counts = counts.sort_values([contract.BUYER_ID, "n", "pop"], ascending=[True, False, True])
    own = {buyer: rows.to_numpy()[:k] for buyer, rows in counts.groupby(contract.BUYER_ID)["row"]}
    k = min(k, len(catalog))
    top = np.empty((len(eval_set.buyers), k), dtype=np.int64)
    for i, buyer in enumerate(eval_set.buyers):
        mine = own.get(buyer, np.empty(0, dtype=np.int64))
        fill = popular[~np.isin(popular, mine)][: k - len(mine)]
        top[i] = np.concatenate([mine, fill])
    return top


def baseline_top_k(
    eval_set: EvalSet,
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    k: int,
    exclude_seen: bool = False,
) -> dict[str, np.ndarray]:
    """Every applicable heuristic baseline's top-k catalog rows for the eval set's queries.

    With ``exclude_seen`` the buyers' earlier products are excluded as for the model, and
    the own-history baseline, which would recommend only those, is left out
    (``contract.applicable_baselines``).
    """
    scorers = {
        contract.BASELINE_POPULAR: lambda: most_popular_top_k(
            eval_set, history, catalog, k, exclude_seen
        ),
        contract.BASELINE_OWN_HISTORY: lambda: own_history_top_k(eval_set, history, catalog, k),
    }
    applicable = contract.applicable_baselines(exclude_seen)
    return {name: scorers[name]() for name in contract.HEURISTIC_BASELINES if name in applicable}


def baseline_recalls(
    eval_set: EvalSet,
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    ks=contract.RECALL_KS,
    exclude_seen: bool = False,
) -> dict[str, dict[int, float]]:
    """recall@k of every applicable heuristic baseline on the same eval set."""
    tops = baseline_top_k(eval_set, history, catalog, max(ks), exclude_seen)
    return {name: recall_at_k(top, eval_set, ks) for name, top in tops.items()}
