"""The slices view's data: where the best (and the highlighted) run wins, against the baselines.

Everything is read from metrics the evaluate step logged (``trainer/evaluate/slices.py``): for
each slice of the test split at ``contract.SLICE_K`` the model's and the baselines' recall with
95% intervals and the model's lift over each baseline; beyond accuracy per scorer at each k. A
run evaluated before slices were logged is listed and marked, with nothing computed for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reporting.metric import present
from reporting.records import RunRecord
from trainer import contract

K = contract.SLICE_K
GROUP_TITLES = {
    contract.SLICE_TARGETS: "Targets: bought by the buyer before, or new",
    contract.SLICE_ACTIVITY: "Buyer activity: distinct days with a purchase before the split",
    contract.SLICE_POPULARITY: "Product popularity: by train interactions",
}
FIGURE_TITLES = {
    contract.BEYOND_COVERAGE: "Catalog coverage",
    contract.BEYOND_POPULARITY_RANK: "Mean popularity rank",
    contract.BEYOND_TAIL_SHARE: "Tail share",
}


@dataclasses.dataclass(frozen=True)
class Figure:
    """A logged value and its 95% interval (each None when not logged or not finite)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, run: RunRecord, key: str) -> Figure:
        """The run's ``key`` with its ``_ci_low`` / ``_ci_high``."""
        values = [
            run.metrics.get(k) for k in (key, contract.ci_low_key(key), contract.ci_high_key(key))
        ]
        return cls(*(v if present(v) else None for v in values))


@dataclasses.dataclass
class SliceRow:
    """One slice of one run: its pairs, the model's and baselines' recall, the lifts."""

    name: str
    label: str
    group: str
    pairs: float | None
    model: Figure
    baselines: dict[str, Figure]
    lifts: dict[str, Figure]


@dataclasses.dataclass
class RunSlices:
    """The slices and beyond-accuracy figures of one run (``rows`` empty: none logged)."""

    run: RunRecord
    why: str  # "best run", "this run", ...
    rows: list[SliceRow]
    baselines: list[str]
    beyond: list[tuple[str, dict[tuple[str, int], float | None]]]  # (scorer label, figures)


def _baselines(run: RunRecord) -> list[str]:
    return [
        b
        for b in contract.BASELINES
        if contract.slice_recall_key(contract.NEW, K, b) in run.metrics
        or contract.beyond_key(contract.BEYOND_COVERAGE, max(contract.RECALL_KS), b) in run.metrics
    ]


def run_slices(run: RunRecord, why: str) -> RunSlices:
    """What the slices view shows of one run."""
    baselines = _baselines(run)
    rows = [
        SliceRow(
            name,
            label,
            group,
            run.metrics.get(contract.slice_pairs_key(name)),
            Figure.of(run, contract.slice_recall_key(name, K)),
            {b: Figure.of(run, contract.slice_recall_key(name, K, b)) for b in baselines},
            {b: Figure.of(run, contract.slice_lift_key(name, b, K)) for b in baselines},
        )
        for name, label, group in contract.SLICES
        if contract.slice_pairs_key(name) in run.metrics
    ]
    beyond = []
    for scorer in (contract.SCORER_MODEL, *baselines):
        figures = {
            (f, k): v if present(v := run.metrics.get(contract.beyond_key(f, k, scorer))) else None
            for f in contract.BEYOND_FIGURES
            for k in contract.RECALL_KS
        }
        if any(v is not None for v in figures.values()):
            beyond.append(
                ("model" if scorer == contract.SCORER_MODEL else scorer.replace("_", " "), figures)
            )
    return RunSlices(run, why, rows, baselines, beyond)


def shown_runs(
    leader: RunRecord | None, highlighted: Sequence[RunRecord]
) -> list[tuple[RunRecord, str]]:
    """The runs the view shows: the best run, then each highlighted run that is not it."""
    out = [(leader, "best run")] if leader else []
    for run in highlighted:
        if leader is None or run.run_id != leader.run_id:
            out.append((run, "this run"))
    return out
