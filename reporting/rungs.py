"""The rungs of a successive-halving sweep: which trial reached which rung, at what value.

Read from the tags each trial's run carries (``contract.TAG_HALVING_*``, written by the rung
trainings and the selection between rungs), so it costs no request of its own. One table, for
the highlighted pipeline job when it ran halving, else for the latest job that did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from reporting.records import RunRecord
from trainer import contract

# Rows listed at most (a halving sweep's trials are bounded by grid.max_runs anyway).
MAX_ROWS = contract.REPORT_LISTED_RUNS


@dataclasses.dataclass(frozen=True)
class RungRow:
    """One trial: its run, its value at each rung (None: not reached), how it ended."""

    run: RunRecord
    values: tuple[float | None, ...]
    reached: int
    epochs: str
    outcome: str  # completed / stopped / continued / trained, or the run's status
    reason: str


@dataclasses.dataclass(frozen=True)
class RungTable:
    """The rungs of one pipeline job's halving sweep."""

    pipeline_job: str
    rungs: int
    rows: tuple[RungRow, ...]
    left_out: int  # trials beyond MAX_ROWS, not listed

    def reached(self, rung: int) -> int:
        """How many of the listed trials trained in ``rung``."""
        return sum(1 for r in self.rows if r.reached >= rung)


def rung_table(runs: Sequence[RunRecord], pipeline_job: str = "") -> RungTable | None:
    """The table of ``pipeline_job`` when it ran halving, else of the latest job that did."""
    halving = [r for r in runs if contract.TAG_HALVING_RUNG in r.tags]
    if not halving:
        return None
    jobs = {r.pipeline_job for r in halving}
    if pipeline_job not in jobs:
        pipeline_job = max(halving, key=lambda r: r.start_time or 0).pipeline_job
    mine = [r for r in halving if r.pipeline_job == pipeline_job]
    rungs = max(_int(r.tags.get(contract.TAG_HALVING_RUNGS)) for r in mine)
    rows = sorted((_row(r, rungs) for r in mine), key=_order)
    return RungTable(pipeline_job, rungs, tuple(rows[:MAX_ROWS]), max(len(rows) - MAX_ROWS, 0))


def _row(run: RunRecord, rungs: int) -> RungRow:
    tags = run.tags
    values = tuple(
        _float(tags.get(contract.halving_rung_value_tag(rung))) for rung in range(1, rungs + 1)
    )
    outcome = tags.get(contract.TAG_HALVING_STATUS, "")
    if run.status != contract.STATUS_FINISHED:
        outcome = run.status  # a rung's training failed (or still runs)
    return RungRow(
        run=run,
        values=values,
        reached=_int(tags.get(contract.TAG_HALVING_RUNG)),
        epochs=tags.get(contract.TAG_HALVING_EPOCHS, ""),
        outcome=outcome,
        reason=tags.get(contract.TAG_HALVING_REASON, ""),
    )


def _order(row: RungRow) -> tuple:
    """Furthest rung first, then the best value there, then the run's name."""
    last = row.values[row.reached - 1] if 0 < row.reached <= len(row.values) else None
    return (-row.reached, -(last if last is not None else -math.inf), row.run.name)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value
