"""Per-buyer rows of an evaluation: each buyer's targets and hits at each k, repeat and new.

One row per evaluated buyer and scorer (the model, a baseline): the number of target pairs,
the hits at each k of ``contract.RECALL_KS``, and the same two counts for the repeat targets
(products the buyer bought before the split) and the new ones; with the slices' inputs also the
buyer's earlier purchase days and the counts among head, torso and tail products
(``contract.band_columns``). Integer counts only, so the
table is small and every later figure (recall, intervals, lifts, slices) is a sum over its
rows: recall@k of any set of buyers is ``sum(hits_at_k) / sum(pairs)``, micro-averaged over
pairs exactly as :func:`trainer.retrieval.metrics.recall_at_k`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer import contract
from trainer.retrieval.metrics import EvalSet

# Counts per buyer stay far below 2**31; int32 halves the table against int64.
COUNT_DTYPE = np.int32


def _row_members(values: np.ndarray, lists: list[np.ndarray]) -> np.ndarray:
    """``out[i, j]``: whether ``values[i, j]`` is in ``lists[i]`` (a value below 0 never is).

    One vectorised membership test: (row, value) pairs are encoded as single integers.
    """
    if values.shape[0] != len(lists):
        raise ValueError(f"{values.shape[0]} rows for {len(lists)} lists")
    if not values.size:
        return np.zeros(values.shape, bool)
    top = max((int(p.max()) for p in lists if len(p)), default=0)
    width = max(int(values.max()), top) + 1
    owner = np.repeat(np.arange(len(lists)), [len(p) for p in lists])
    flat = np.concatenate([*lists, np.empty(0, np.int64)]).astype(np.int64)
    encoded = np.arange(values.shape[0], dtype=np.int64)[:, None] * width + values
    return np.isin(encoded, owner * width + flat) & (values >= 0)


def repeat_flags(eval_set: EvalSet, seen: list[np.ndarray]) -> list[np.ndarray]:
    """Per query, whether each of its positives is a repeat target (in ``seen``)."""
    if not eval_set.positives:
        return []
    lengths = [len(p) for p in eval_set.positives]
    width = max(lengths + [1])
    padded = np.full((len(lengths), width), -1, np.int64)
    for i, p in enumerate(eval_set.positives):
        padded[i, : len(p)] = p
    member = _row_members(padded, seen)
    return [member[i, :n] for i, n in enumerate(lengths)]


def _band_counts(
    top: np.ndarray, found: np.ndarray, eval_set: EvalSet, band: np.ndarray, ks
) -> dict[str, np.ndarray]:
    """Each popularity band's target pairs and hits at each k per query (band per catalog row)."""
    out: dict[str, np.ndarray] = {}
    target_band = [band[p] for p in eval_set.positives]
    slot_band = np.where(top >= 0, band[np.clip(top, 0, None)], -1) if top.size else top
    for i, part in enumerate(contract.POPULARITY_PARTS):
        out[contract.pairs_column(part)] = np.array(
            [int((b == i).sum()) for b in target_band], np.int64
        )
        inside = found & (slot_band == i)
        for k in ks:
            out[contract.hits_column(k, part)] = inside[:, :k].sum(axis=1)
    return out


def per_buyer_rows(
    top: np.ndarray,
    eval_set: EvalSet,
    seen: list[np.ndarray],
    scorer: str,
    ks=contract.RECALL_KS,
    band: np.ndarray | None = None,
    earlier_days: np.ndarray | None = None,
) -> pd.DataFrame:
    """One scorer's per-buyer rows (columns: ``contract.SCORER``, buyer, then the counts).

    Args:
        top: Ranked catalog rows per query (queries x at least max(ks)); below 0: empty slot.
        eval_set: The split's queries and their positives (catalog rows).
        seen: Per query, the catalog rows its buyer bought before the split (repeat targets).
        scorer: The scorer's name (``contract.SCORER_MODEL``, a baseline's name, ...).
        ks: The cut-offs.
        band: Per catalog row, its popularity band (index into ``contract.POPULARITY_PARTS``);
            with ``earlier_days`` (per query) the rows get ``contract.band_columns()`` too.
        earlier_days: Per query, its buyer's distinct earlier purchase days.
    """
    found = _row_members(top, eval_set.positives)
    repeat_found = found & _row_members(top, seen)
    pairs = np.array([len(p) for p in eval_set.positives], np.int64)
    repeat_pairs = np.array([int(f.sum()) for f in repeat_flags(eval_set, seen)], np.int64)
    columns = {
        contract.SCORER: scorer,
        contract.BUYER_ID: eval_set.buyers.astype(str),
    }
    counts = {
        "": (pairs, found),
        contract.REPEAT: (repeat_pairs, repeat_found),
        contract.NEW: (pairs - repeat_pairs, found & ~repeat_found),
    }
    for part in contract.TARGET_PARTS:
        n, hit = counts[part]
        columns[contract.pairs_column(part)] = n.astype(COUNT_DTYPE)
        for k in ks:
            columns[contract.hits_column(k, part)] = hit[:, :k].sum(axis=1).astype(COUNT_DTYPE)
    if band is not None and earlier_days is not None:
        columns[contract.EARLIER_DAYS] = np.asarray(earlier_days).astype(COUNT_DTYPE)
        for name, counts in _band_counts(top, found, eval_set, band, ks).items():
            columns[name] = counts.astype(COUNT_DTYPE)
    return pd.DataFrame(columns)


def recalls_of(rows: pd.DataFrame, ks=contract.RECALL_KS, part: str = "") -> dict[int, float]:
    """Micro-averaged recall@k of one scorer's rows: sum of hits over sum of pairs."""
    pairs = int(rows[contract.pairs_column(part)].sum())
    if pairs == 0:
        return {k: float("nan") for k in ks}
    return {k: int(rows[contract.hits_column(k, part)].sum()) / pairs for k in ks}


def write_rows(frames: list[pd.DataFrame], path: str) -> str:
    """Writes per-buyer frames as one table, the scorer a dictionary column; returns ``path``."""
    table = pd.concat(frames, ignore_index=True)
    table[contract.SCORER] = table[contract.SCORER].astype("category")
    table.to_parquet(path, index=False, compression="zstd")
    return path
