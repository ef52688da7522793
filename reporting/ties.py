"""Intervals on the leaderboard, which runs are tied with the leader, and the decision.

Intervals are computed at evaluation time (the paired bootstrap over buyers of each run,
``trainer/retrieval/bootstrap.py``) and only read here, so the report stays fast. The rank
metric's interval is the one its run logged (``RankMetric.interval``); for the best epoch's
validation recall that is the chosen model's validation interval, moved to sit around the
rank value (the same spread: the two differ only by a calibration's scale, if any).

Ties, two ways:

* **Paired** (what a run carries when the sweep's best-model step judged it,
  :func:`paired_ties` via ``reporting.best``): the leader's and the run's per-buyer validation
  rows, the same buyers, resampled together; the run is tied when the 95% interval of "run -
  leader" recall@k holds zero. The report reads the tags (``contract.TAG_TIED_WITH_BEST``,
  ``TAG_DIFF_VS_BEST_CI``) and uses them only when they name the report's own leader
  (``TAG_BEST_RUN_ID``).
* **Approximate** (every other run with an interval): the leader's lead is within 1.96
  standard errors of the difference, each run's standard error read off its 95% interval
  (width / 3.92), the runs taken as independent. On the same buyers the true paired
  difference is less noisy, so this calls more ties than the paired test (conservative: a run
  marked behind the leader really is). The pages say which runs were judged which way.

Runs without an interval (older runs, runs not evaluated) are neither tied nor beaten: unknown.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reporting.aggregate import LeaderRow
from reporting.metric import RankMetric, fmt, label, pct, present
from reporting.records import RunRecord
from trainer import contract, retrieval

Z95 = 1.959963984540054
_TRUTH = {"true": True, "false": False}


def interval(run: RunRecord, rank: RankMetric, value: float | None) -> tuple[float, float] | None:
    """The 95% interval of ``run``'s rank value ``value``, or None when it logged none."""
    centre_key, low_key, high_key = rank.interval
    centre, low, high = (run.metrics.get(k) for k in (centre_key, low_key, high_key))
    if value is None or not all(present(v) for v in (centre, low, high)):
        return None
    return value - (centre - low), value + (high - centre)  # type: ignore[operator]


def _se(bounds: tuple[float, float]) -> float:
    return (bounds[1] - bounds[0]) / (2 * Z95)


@dataclasses.dataclass(frozen=True)
class PairedTie:
    """A run against the leader on the same validation buyers: run - leader recall@k."""

    diff: retrieval.Estimate
    tied: bool  # the interval holds zero
    buyers: int

    def tags(self, leader_id: str, k: int, resamples: int) -> dict[str, str]:
        """The run's tie tags (``contract.TAG_BEST_RUN_ID`` and the others)."""
        d = self.diff
        return {
            contract.TAG_BEST_RUN_ID: leader_id,
            contract.TAG_TIED_WITH_BEST: "true" if self.tied else "false",
            contract.TAG_DIFF_VS_BEST: f"{d.value:+.4f}",
            contract.TAG_DIFF_VS_BEST_CI: f"[{d.low:+.4f}, {d.high:+.4f}]",
            contract.TAG_TIE_TEST: (
                f"paired bootstrap over {self.buyers} validation buyers, recall@{k}, "
                f"{resamples} resamples, seed {contract.BOOTSTRAP_SEED}, "
                f"{contract.BOOTSTRAP_CONFIDENCE:.0%} percentile interval of run - best"
            ),
        }


def paired_ties(
    leader: pd.DataFrame, others: dict[str, pd.DataFrame], k: int
) -> dict[str, PairedTie | str]:
    """Each run against the leader, paired by buyer: a :class:`PairedTie`, or why not.

    One bootstrap for all (every run a column drawn with the same buyers); the intervals are
    not corrected for the number of runs (a correction would call more ties).

    Args:
        leader: The leader's per-buyer validation rows (the model's, one row per buyer).
        others: Run id -> its per-buyer validation rows.
        k: The cut-off (the rank metric's).
    """
    lead = leader.set_index(contract.BUYER_ID)
    pairs = lead[contract.PAIRS]
    out: dict[str, PairedTie | str] = {}
    hits = {"": lead[contract.hits_column(k)].to_numpy(np.int64)[:, None]}
    for run_id, rows in others.items():
        theirs = rows.set_index(contract.BUYER_ID)
        if theirs.index.has_duplicates or set(theirs.index) != set(lead.index):
            out[run_id] = "its validation buyers are not the leader's"
        elif not theirs.loc[lead.index, contract.PAIRS].equals(pairs):
            out[run_id] = "its validation targets are not the leader's"
        else:
            hits[run_id] = theirs.loc[lead.index, contract.hits_column(k)].to_numpy(np.int64)
            hits[run_id] = hits[run_id][:, None]
    if len(hits) == 1 or not len(lead):
        return out
    result = retrieval.paired_bootstrap(pairs.to_numpy(np.int64), hits, "", (k,))
    for run_id, by_k in result.comparisons.items():
        lift = by_k[k].lift  # leader - run: turned round
        diff = retrieval.Estimate(0.0 - lift.value, 0.0 - lift.high, 0.0 - lift.low)  # no -0.0
        tied = not (diff.low > 0 or diff.high < 0)  # NaN bounds: nothing claimed, tied
        out[run_id] = PairedTie(diff, tied, len(lead))
    return out


def _paired_tag(run: RunRecord, leader_id: str) -> bool | None:
    """The run's paired tie with ``leader_id`` as tagged by the best-model step, else None."""
    if run.tags.get(contract.TAG_BEST_RUN_ID) != leader_id:
        return None
    return _TRUTH.get(run.tags.get(contract.TAG_TIED_WITH_BEST, ""))


def mark_ties(rows: Sequence[LeaderRow], rank: RankMetric) -> None:
    """Fills each ranked row's interval and whether it is tied with the leader (in place).

    A run the best-model step judged against this leader takes its paired verdict; any other
    run with an interval the approximate one (``LeaderRow.tie_paired`` says which).
    """
    ranked = [r for r in rows if r.rank is not None]
    for row in ranked:
        row.interval = interval(row.run, rank, row.value)
    if not ranked:
        return
    leader = ranked[0]
    for row in ranked[1:]:
        paired = _paired_tag(row.run, leader.run.run_id)
        if paired is not None:
            row.tied, row.tie_paired = paired, True
            row.diff_ci = row.run.tags.get(contract.TAG_DIFF_VS_BEST_CI, "")
        elif leader.interval is not None and row.interval is not None:
            gap = abs(leader.value - row.value)  # type: ignore[operator]
            spread = math.hypot(_se(leader.interval), _se(row.interval))
            row.tied = gap <= Z95 * spread if spread > 0 else gap == 0
    if leader.interval is not None or any(r.tie_paired for r in ranked[1:]):
        leader.tied = True


def _ties_clause(ranked: Sequence[LeaderRow]) -> str:
    tied = [r.run.name for r in ranked[1:] if r.tied]
    judged = [r for r in ranked[1:] if r.tied is not None]
    paired = sum(1 for r in judged if r.tie_paired)
    if paired == len(judged):
        how = "paired over the same validation buyers"
    elif not paired:
        how = "approximate: intervals taken as independent"
    else:
        how = (
            f"paired over the same validation buyers for {paired}, approximate for "
            f"{len(judged) - paired}"
        )
    if tied:
        names = ", ".join(tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
        return (
            f", statistically tied with {len(tied)} of the {len(judged)} other runs judged "
            f"({names}; {how})"
        )
    if judged:
        return f", ahead of all {len(judged)} other runs judged ({how})"
    return ""


def strongest_baseline(run: RunRecord, k: int) -> str | None:
    """The baseline with the highest test recall@k in ``run`` (None when it logged none)."""
    logged = [
        (value, b)
        for b in contract.BASELINES
        if present(value := run.metrics.get(contract.baseline_recall_key(b, k)))
    ]
    return max(logged)[1] if logged else None


def _lift_clause(run: RunRecord, k: int) -> str:
    """The relative lift over the strongest baseline with its interval and verdict."""
    baseline = strongest_baseline(run, k)
    if baseline is None:  # no baseline recall logged: its verdicts alone, if any
        verdicts = [
            f"{v} {b.replace('_', ' ')}"
            for b in contract.BASELINES
            if (v := run.tags.get(contract.verdict_tag(b)))
        ]
        return ", " + ", ".join(verdicts) + " (Holm-corrected)" if verdicts else ""
    key = contract.relative_lift_key(baseline, k)
    value, low, high = (run.metrics.get(m) for m in (key, *_bounds(key)))
    verdict = run.tags.get(contract.verdict_tag(baseline, k)) or run.tags.get(
        contract.verdict_tag(baseline)
    )
    name = baseline.replace("_", " ")
    if not present(value):  # an older run: the point lift from its recalls, no interval
        ours = run.metrics.get(contract.test_recall_key(k))
        theirs = run.metrics.get(contract.baseline_recall_key(baseline, k))
        value = ours / theirs - 1 if present(ours) and theirs else None  # type: ignore[operator]
    if value is None:
        return f"; strongest baseline {name}" + (f": {verdict}" if verdict else "")
    text = f"; against the strongest baseline, {name}, {pct(value)}"
    if present(low) and present(high):
        text += f" [95% {pct(low)} to {pct(high)}]"
    else:
        text += " (no interval logged)"
    text += f" at {k} on test"
    text += f": {verdict} (Holm-corrected)" if verdict else ""
    others = [
        f"{v} {b.replace('_', ' ')}"
        for b in contract.BASELINES
        if b != baseline and (v := run.tags.get(contract.verdict_tag(b)))
    ]
    return text + (f"; {', '.join(others)}" if others else "")


def _bounds(metric: str) -> tuple[str, str]:
    return contract.ci_low_key(metric), contract.ci_high_key(metric)


def decision(rows: Sequence[LeaderRow], rank: RankMetric, headline: str) -> str | None:
    """The sweep's decision in one sentence: the pick, its ties, its test figure, its lift.

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
    text += _ties_clause(ranked)
    test = run.metrics.get(headline)
    if present(test):
        text += f"; on test {label(headline)} = {fmt(test)}"
    text += _lift_clause(run, rank.lift_k)
    return text + "."
