"""Intervals on the leaderboard and which runs are tied with the leader.

Intervals are computed at evaluation time (the paired bootstrap over buyers of each run,
``trainer/retrieval/bootstrap.py``) and only read here, so the report stays fast. The rank
metric's interval is the one its run logged (``RankMetric.interval``); for the best epoch's
validation recall that is the chosen model's validation interval, moved to sit around the
rank value (the same spread: the two differ only by a calibration's scale, if any).

A run is tied with the leader when the leader's lead over it is within 1.96 standard errors
of the difference, each run's standard error read off its 95% interval (width / 3.92). The
runs' own bootstraps are not paired with each other, so the test treats them as independent:
on the same buyers the true paired difference is less noisy, so this calls more ties than a
paired test would (conservative: a run marked better than another really is). Runs without an
interval (older runs, runs not evaluated) are neither tied nor beaten: unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reporting.aggregate import LeaderRow
from reporting.metric import RankMetric, fmt, label, present
from reporting.records import RunRecord
from trainer import contract

Z95 = 1.959963984540054


def interval(run: RunRecord, rank: RankMetric, value: float | None) -> tuple[float, float] | None:
    """The 95% interval of ``run``'s rank value ``value``, or None when it logged none."""
    centre_key, low_key, high_key = rank.interval
    centre, low, high = (run.metrics.get(k) for k in (centre_key, low_key, high_key))
    if value is None or not all(present(v) for v in (centre, low, high)):
        return None
    return value - (centre - low), value + (high - centre)  # type: ignore[operator]


def _se(bounds: tuple[float, float]) -> float:
    return (bounds[1] - bounds[0]) / (2 * Z95)


def mark_ties(rows: Sequence[LeaderRow], rank: RankMetric) -> None:
    """Fills each ranked row's interval and whether it is tied with the leader (in place)."""
    ranked = [r for r in rows if r.rank is not None]
    for row in ranked:
        row.interval = interval(row.run, rank, row.value)
    if not ranked or ranked[0].interval is None:
        return
    leader = ranked[0]
    leader.tied = True
    for row in ranked[1:]:
        if row.interval is None:
            continue
        gap = abs(leader.value - row.value)  # type: ignore[operator]
        spread = math.hypot(_se(leader.interval), _se(row.interval))
        row.tied = gap <= Z95 * spread if spread > 0 else gap == 0


def decision(rows: Sequence[LeaderRow], rank: RankMetric, headline: str) -> str | None:
    """The sweep's decision in one sentence: the leader, its ties, its test figure, its verdicts.

    Args:
        rows: Leaderboard rows (ranked first), with intervals and ties marked.
        rank: The rank metric.
        headline: The test metric shown beside the choice (never used to make it).
    """
    ranked = [r for r in rows if r.rank is not None]
    if not ranked:
        return None
    leader = ranked[0]
    run = leader.run
    text = (
        f"Pick {run.name} ({run.feature_config} \u00d7 {run.model_config}): best by "
        f"{rank.label} = {fmt(leader.value)}"
    )
    if leader.interval:
        text += f" (95% {fmt(leader.interval[0])} to {fmt(leader.interval[1])})"
    tied = [r.run.name for r in ranked[1:] if r.tied]
    judged = sum(1 for r in ranked[1:] if r.tied is not None)
    if tied:
        names = ", ".join(tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
        text += f", statistically tied with {len(tied)} of the {judged} other runs judged ({names})"
    elif judged:
        text += f", ahead of all {judged} other runs judged"
    test = run.metrics.get(headline)
    if present(test):
        text += f"; on test {label(headline)} = {fmt(test)}"
    verdicts = [
        f"{verdict} {baseline.replace('_', ' ')}"
        for baseline in contract.BASELINES
        if (verdict := run.tags.get(contract.verdict_tag(baseline)))
    ]
    if verdicts:
        text += ", " + ", ".join(verdicts) + " (Holm-corrected)"
    return text + "."
