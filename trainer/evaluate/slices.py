"""Where a model wins: recall, lift and interval per slice of the test split, and beyond accuracy.

Slices (``contract.SLICES``) of the test split's per-buyer rows: repeat and new targets, buyer
activity bands by earlier purchase days, head / torso / tail products. For each, at
``contract.SLICE_K``, the model's and every baseline's recall with a 95% interval and the
model's lift over each baseline with its interval, from one paired bootstrap over the buyers
for all slices (``retrieval.sliced_bootstrap``: the draws of the run's other intervals). The
slices describe where the gain comes from; no verdict is claimed per slice, so no correction
for their number is made. Beyond accuracy comes from each scorer's top-k lists
(``retrieval.beyond_accuracy``). Non-finite figures (an empty slice) are not logged.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trainer import contract, retrieval

K = contract.SLICE_K


def _slice_columns(frame: pd.DataFrame, name: str, group: str) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, hits at K) per buyer within one slice (zero for a buyer outside it)."""
    if group == contract.SLICE_ACTIVITY:
        _, _, low, high = next(b for b in contract.ACTIVITY_DAY_BANDS if b[0] == name)
        days = frame[contract.EARLIER_DAYS].to_numpy()
        inside = (days >= low) & (days <= (high if high is not None else np.inf))
        pairs = np.where(inside, frame[contract.pairs_column()].to_numpy(np.int64), 0)
        return pairs, np.where(inside, frame[contract.hits_column(K)].to_numpy(np.int64), 0)
    return (
        frame[contract.pairs_column(name)].to_numpy(np.int64),
        frame[contract.hits_column(K, name)].to_numpy(np.int64),
    )


def _put(out: dict[str, float], key: str, estimate: retrieval.Estimate) -> None:
    for name, value in (
        (key, estimate.value),
        (contract.ci_low_key(key), estimate.low),
        (contract.ci_high_key(key), estimate.high),
    ):
        if math.isfinite(value):
            out[name] = value


def slice_metrics(rows: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The slices' metrics (``contract.slice_*_key``) from the test split's per-buyer rows.

    Only the exported model (``contract.SCORER_MODEL``) and the baselines; rows without the
    band columns (``contract.band_columns``) give the repeat / new slices only.
    """
    own = (contract.SCORER_SELECTED, contract.SCORER_RETRIEVAL)
    scorers = {n: f for n, f in rows.items() if n not in own}
    model = scorers[contract.SCORER_MODEL]
    banded = contract.EARLIER_DAYS in model.columns
    slices = {}
    for name, _, group in contract.SLICES:
        if group != contract.SLICE_TARGETS and not banded:
            continue
        cols = {s: _slice_columns(f, name, group) for s, f in scorers.items()}
        slices[name] = (cols[contract.SCORER_MODEL][0], {s: c[1][:, None] for s, c in cols.items()})
    results = retrieval.sliced_bootstrap(slices, contract.SCORER_MODEL, (K,))
    out: dict[str, float] = {}
    for name, result in results.items():
        out[contract.slice_pairs_key(name)] = float(slices[name][0].sum())
        for scorer, by_k in result.recall.items():
            _put(out, contract.slice_recall_key(name, K, scorer), by_k[K])
        for baseline, by_k in result.comparisons.items():
            _put(out, contract.slice_lift_key(name, baseline, K), by_k[K].lift)
    return out


def beyond_metrics(tops: dict[str, np.ndarray], pop: retrieval.Popularity) -> dict[str, float]:
    """Beyond-accuracy figures (``contract.beyond_key``) of the model's and baselines' lists."""
    out: dict[str, float] = {}
    for scorer, top in tops.items():
        if scorer in (contract.SCORER_SELECTED, contract.SCORER_RETRIEVAL):
            continue
        for figure, by_k in retrieval.beyond_accuracy(top, pop).items():
            for k, value in by_k.items():
                if math.isfinite(value):
                    out[contract.beyond_key(figure, k, scorer)] = value
    return out
