"""What a run cost, as the report shows it: its own steps plus its share of the shared ones.

The evaluate step logs a run's own cost (``contract.COST_USD``: train and evaluate) and the
whole cost of the ingest and transform it used, each with its execution's id
(trainer/cost). A shared step is paid once, so each run here carries the shared step's cost
divided by the number of runs read that logged the same execution: a sweep's runs share its
ingest, the runs of a feature config its transform, and a later pipeline run that reused a
cached output shares it too. Runs trained before costs were logged have none and are shown so.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from reporting.aggregate import LeaderRow, metric_value
from reporting.metric import fmt
from reporting.records import RunRecord
from trainer import contract


@dataclasses.dataclass(frozen=True)
class RunCost:
    """A run's estimated cost in USD: its own steps' and its share of the shared steps'.

    Attributes:
        usd: ``own + shared``.
        own: Train and evaluate.
        shared: Its share of ingest and transform.
        sharing: Per shared step, how many runs shared that execution.
        unknown: Steps whose cost the run did not log (an output from before costs, a step
            that records none), so ``usd`` leaves them out.
    """

    usd: float
    own: float
    shared: float
    sharing: Mapping[str, int]
    unknown: tuple[str, ...] = ()


def metric_keys() -> list[str]:
    """The metrics the costs are made of (read for every run)."""
    return [contract.COST_USD, *(contract.cost_usd_key(s) for s in contract.SHARED_STEPS)]


def run_costs(runs: Iterable[RunRecord]) -> dict[str, RunCost]:
    """Each run's cost by run id; runs that logged none are left out."""
    runs = list(runs)
    executions = collections.Counter(
        (step, run.tags[tag])
        for run in runs
        if metric_value(run, contract.COST_USD) is not None
        for step in contract.SHARED_STEPS
        if (tag := contract.cost_execution_tag(step)) in run.tags
    )
    out = {}
    for run in runs:
        own = metric_value(run, contract.COST_USD)
        if own is None:
            continue
        shared, sharing = 0.0, {}
        unknown = [s for s in contract.OWN_STEPS if contract.cost_usd_key(s) not in run.metrics]
        for step in contract.SHARED_STEPS:
            usd = metric_value(run, contract.cost_usd_key(step))
            execution = run.tags.get(contract.cost_execution_tag(step), "")
            if usd is None or not execution:
                unknown.append(step)
                continue
            sharing[step] = executions[(step, execution)]
            shared += usd / sharing[step]
        out[run.run_id] = RunCost(own + shared, own, shared, sharing, tuple(unknown))
    return out


def pareto_front(
    points: Sequence[tuple[str, float, float]], lower_better: bool = False
) -> list[str]:
    """The ids of the points no other point beats on both cost and value, cheapest first.

    Args:
        points: (id, cost, value) with finite numbers.
        lower_better: Whether a lower value is better (a loss); else higher (recall).
    """
    sign = 1.0 if lower_better else -1.0
    front, best = [], None
    for pid, _, value in sorted(points, key=lambda p: (p[1], sign * p[2])):
        if best is None or sign * value < sign * best:
            front.append(pid)
            best = value
    return front


def usd(value: float | None) -> str:
    """A cost for display: ``$0.0123`` below a dollar, ``$12.34`` above; an em dash when none."""
    if value is None:
        return "\u2014"
    return f"${value:.4f}" if abs(value) < 1 else f"${value:,.2f}"


def cheapest_tied(
    rows: Sequence[LeaderRow], costs: Mapping[str, RunCost]
) -> tuple[LeaderRow, list[LeaderRow]] | None:
    """(the cheapest run tied with the best, the tied runs with a cost), or None.

    The tied runs are the leader and every ranked run judged tied with it (``LeaderRow.tied``);
    those without a cost are left out.
    """
    ranked = [r for r in rows if r.rank is not None]
    if not ranked:
        return None
    tied = [ranked[0], *(r for r in ranked[1:] if r.tied)]
    priced = [r for r in tied if r.run.run_id in costs]
    if not priced:
        return None
    cheapest = min(priced, key=lambda r: (costs[r.run.run_id].usd, r.rank))
    return cheapest, priced


def cost_sentence(
    rows: Sequence[LeaderRow], costs: Mapping[str, RunCost], rank_label: str
) -> str | None:
    """The dashboard's sentence naming the cheapest run tied with the best (None: no costs)."""
    found = cheapest_tied(rows, costs)
    if found is None:
        return None
    cheapest, priced = found
    leader = next(r for r in rows if r.rank is not None)
    others = len(priced) - 1
    amount = usd(costs[cheapest.run.run_id].usd)
    if cheapest is leader:
        if not others:
            return (
                f"The best run, {leader.run.name}, cost {amount}; no other run with a cost is "
                f"tied with it on {rank_label}."
            )
        return (
            f"The best run, {leader.run.name}, is also the cheapest of the {others + 1} runs "
            f"tied with the best on {rank_label}: {amount}."
        )
    text = (
        f"Cheapest run tied with the best on {rank_label}: {cheapest.run.name} "
        f"({cheapest.run.feature_config} \u00d7 {cheapest.run.model_config}) at {amount}, "
        f"{rank_label} = {fmt(cheapest.value)}"
    )
    if leader.run.run_id in costs:
        best_cost = costs[leader.run.run_id].usd
        saved = f", {1 - costs[cheapest.run.run_id].usd / best_cost:.0%} less" if best_cost else ""
        text += f"; the best, {leader.run.name}, cost {usd(best_cost)}{saved}"
    else:
        text += f"; the best, {leader.run.name}, logged no cost"
    return text + "."
