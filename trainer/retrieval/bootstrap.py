"""A paired bootstrap over buyers: intervals of recall@k and of the lift over baselines.

Every scorer (the model, each baseline) was evaluated on the same buyers, so a resample draws
buyers (with replacement, as many as there are) once and applies the draw to every scorer:
the differences are paired. Inside a resample recall@k is micro-averaged over pairs, as the
point value is: the sum of the drawn buyers' hits over the sum of their target pairs (a buyer
drawn twice counts twice). The interval is the percentile interval of the resampled values.

A lift is the model's recall minus a baseline's (absolute) and the model's over the
baseline's minus one (relative). Whether the model beats a baseline at k is a two-sided test
of "lift = 0" whose p-value is read off the same resamples; the p-values of every (baseline,
k) are Holm-corrected together, and the verdict is ``beats`` (the lift is significantly above
zero after the correction), ``worse`` (below) or ``tied``.

NumPy only, vectorised: a resample is a row of per-buyer weights (how often each buyer was
drawn) and all scorers' sums are one matrix product, in chunks of resamples so memory stays
bounded (``bench/bootstrap_bench.py``: well under a second for 10,000 buyers).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from trainer import contract

# Weight matrix entries held at once (chunk of resamples x buyers): 32 MiB of float64.
CHUNK_ENTRIES = 4_000_000


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point value and its percentile interval."""

    value: float
    low: float
    high: float


@dataclasses.dataclass
class Comparison:
    """The model against one baseline at one k."""

    lift: Estimate  # model recall - baseline recall
    relative: Estimate  # model recall / baseline recall - 1
    p_value: float  # two-sided bootstrap p-value of "lift = 0", before the correction
    p_holm: float  # Holm-adjusted over every (baseline, k) of the family
    verdict: str  # contract.VERDICT_BEATS, VERDICT_TIED or VERDICT_WORSE


@dataclasses.dataclass
class BootstrapResult:
    """Intervals of every scorer's recall@k and the model's comparisons with the baselines."""

    recall: dict[str, dict[int, Estimate]]
    comparisons: dict[str, dict[int, Comparison]]
    resamples: int
    confidence: float
    buyers: int


def resample_sums(
    columns: np.ndarray, resamples: int, seed: int, chunk_entries: int = CHUNK_ENTRIES
) -> np.ndarray:
    """Column sums of ``resamples`` bootstrap resamples of the rows of ``columns``.

    Args:
        columns: [buyers, c] per-buyer counts.
        resamples: How many resamples.
        seed: The generator's seed (the same seed, buyers and resamples: the same draws).
        chunk_entries: Weight-matrix entries held at once.

    Returns:
        [resamples, c]: each resample's column sums.
    """
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    step = max(1, chunk_entries // max(n, 1))
    values = columns.astype(np.float64)
    out = np.empty((resamples, columns.shape[1]), np.float64)
    for start in range(0, resamples, step):
        c = min(step, resamples - start)
        drawn = rng.integers(0, n, size=(c, n), dtype=np.int32) + (np.arange(c) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=c * n).reshape(c, n)
        out[start : start + c] = weights @ values
    return out


def _ratio(hits: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return hits / pairs


def _estimate(value: float, samples: np.ndarray, alpha: float) -> Estimate:
    finite = samples[np.isfinite(samples)]
    if not np.isfinite(value) or len(finite) < len(samples):
        return Estimate(float(value), float("nan"), float("nan"))
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(value), float(low), float(high))


def _p_value(samples: np.ndarray) -> tuple[float, int]:
    """Two-sided p-value of "the statistic is 0" and the side (+1, -1) the mass lies on."""
    if not np.isfinite(samples).all():  # no pairs to count: nothing can be claimed
        return 1.0, 0
    b = len(samples)
    at_most = int(np.count_nonzero(samples <= 0))
    at_least = int(np.count_nonzero(samples >= 0))
    p = min(1.0, 2 * (min(at_most, at_least) + 1) / (b + 1))
    return p, (1 if at_least > at_most else -1)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (in the input's order)."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def paired_bootstrap(
    pairs: np.ndarray,
    hits: dict[str, np.ndarray],
    model: str,
    ks: tuple[int, ...],
    resamples: int = contract.BOOTSTRAP_RESAMPLES,
    seed: int = contract.BOOTSTRAP_SEED,
    confidence: float = contract.BOOTSTRAP_CONFIDENCE,
    baselines: tuple[str, ...] | None = None,
) -> BootstrapResult:
    """Percentile intervals of every scorer's recall@k and of the model's lift over the others.

    Args:
        pairs: [buyers] target pairs per buyer (the same buyers for every scorer).
        hits: Scorer -> [buyers, len(ks)] hits at each k.
        model: The scorer compared with all the others (the baselines).
        ks: The cut-offs (the columns of each hits matrix).
        resamples: Bootstrap resamples (>= 1,000 for a 95% interval worth the name).
        seed: The resampling seed.
        confidence: The intervals' level; the test's level is ``1 - confidence``.
        baselines: The scorers the model is compared with (default: every other one); the
            others get their recall's interval only.
    """
    return sliced_bootstrap({"": (pairs, hits)}, model, ks, resamples, seed, confidence, baselines)[
        ""
    ]


def sliced_bootstrap(
    slices: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]],
    model: str,
    ks: tuple[int, ...],
    resamples: int = contract.BOOTSTRAP_RESAMPLES,
    seed: int = contract.BOOTSTRAP_SEED,
    confidence: float = contract.BOOTSTRAP_CONFIDENCE,
    baselines: tuple[str, ...] | None = None,
) -> dict[str, BootstrapResult]:
    """:func:`paired_bootstrap` of several slices of the same buyers, from one set of draws.

    Each slice gives its own per-buyer pairs and hits (zero for a buyer outside it); the buyers
    are drawn once for all, so a slice's result is what ``paired_bootstrap`` would give it
    alone, at the cost of one resampling. The Holm correction runs within each slice.

    Args:
        slices: Slice name -> (pairs [buyers], scorer -> hits [buyers, len(ks)]).
        model: The scorer compared with the others.
        ks: The cut-offs.
        resamples: Bootstrap resamples.
        seed: The resampling seed.
        confidence: The intervals' level.
        baselines: The scorers the model is compared with (default: every other one).
    """
    blocks, spans, start = [], {}, 0
    for name, (pairs, hits) in slices.items():
        block = np.column_stack([pairs, *(hits[s] for s in hits)])
        blocks.append(block)
        spans[name] = (start, start + block.shape[1], list(hits), len(pairs))
        start += block.shape[1]
    columns = np.column_stack(blocks)
    if not columns.shape[0]:  # nothing evaluated: every figure is NaN
        columns = np.zeros((1, columns.shape[1]), np.int64)
    sums = resample_sums(columns, resamples, seed)
    total = columns.sum(axis=0).astype(np.float64)
    return {
        name: _summarise(
            total[a:b], sums[:, a:b], scorers, model, ks, confidence, baselines, buyers
        )
        for name, (a, b, scorers, buyers) in spans.items()
    }


def _summarise(
    total: np.ndarray,
    sums: np.ndarray,
    scorers: list[str],
    model: str,
    ks: tuple[int, ...],
    confidence: float,
    baselines: tuple[str, ...] | None,
    buyers: int,
) -> BootstrapResult:
    """One slice's intervals and comparisons from its column totals and resampled sums."""
    alpha = 1 - confidence
    resamples = sums.shape[0]
    point = _ratio(total[1:], total[0]).reshape(len(scorers), len(ks))
    sampled = _ratio(sums[:, 1:], sums[:, :1]).reshape(resamples, len(scorers), len(ks))
    recall = {
        s: {k: _estimate(point[i, j], sampled[:, i, j], alpha) for j, k in enumerate(ks)}
        for i, s in enumerate(scorers)
    }
    m = scorers.index(model)
    tests = []
    compared = [s for s in scorers if s != model] if baselines is None else list(baselines)
    for i, baseline in enumerate(scorers):
        if baseline not in compared:
            continue
        for j, k in enumerate(ks):
            lift = sampled[:, m, j] - sampled[:, i, j]
            relative = _ratio(sampled[:, m, j], sampled[:, i, j]) - 1
            p, side = _p_value(lift)
            tests.append((baseline, k, point[m, j] - point[i, j], lift, relative, i, j, p, side))
    adjusted = holm([t[7] for t in tests])
    comparisons: dict[str, dict[int, Comparison]] = {}
    for (baseline, k, value, lift, relative, i, j, p, side), p_holm in zip(
        tests, adjusted, strict=True
    ):
        verdict = (
            contract.VERDICT_TIED
            if p_holm > alpha
            else (contract.VERDICT_BEATS if side > 0 else contract.VERDICT_WORSE)
        )
        comparisons.setdefault(baseline, {})[k] = Comparison(
            lift=_estimate(value, lift, alpha),
            relative=_estimate(_ratio(point[m, j], point[i, j]) - 1, relative, alpha),
            p_value=p,
            p_holm=p_holm,
            verdict=verdict,
        )
    return BootstrapResult(recall, comparisons, resamples, confidence, buyers)
