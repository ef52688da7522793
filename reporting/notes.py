"""What the report says beyond its tables: missing histories, runs or metric, protocols, NaN."""

from __future__ import annotations

from reporting import aggregate, protocol
from reporting.metric import RankMetric, non_finite
from reporting.records import RunRecord
from reporting.text import short_text


def non_finite_note(runs: list[RunRecord]) -> str | None:
    """Say which runs logged NaN or infinite values, which no rank, mean or chart uses."""
    values = {r.name: sum(1 for v in r.metrics.values() if non_finite(v)) for r in runs}
    points = {
        r.name: sum(1 for pts in r.history.values() for _, v in pts if non_finite(v)) for r in runs
    }
    named = [n for n in dict.fromkeys([*values, *points]) if values.get(n) or points.get(n)]
    if not named:
        return None
    shown = ", ".join(repr(short_text(n, 60)) for n in named[:5])
    more = f" and {len(named) - 5} more" if len(named) > 5 else ""
    return (
        f"{sum(values.values())} metric values and {sum(points.values())} per-epoch points are "
        f"NaN, infinite or beyond \u00b11e300 (runs {shown}{more}): they are shown as logged "
        "(NaN, inf, -inf) and left out of ranks, means and charts."
    )


def reader_notes(
    history_error: str | None,
    missing: list[str],
    any_runs: bool,
    rows: list[aggregate.LeaderRow],
    rank: RankMetric,
) -> list[str]:
    """What the reader must know beyond the tables: missing histories, runs or metric."""
    notes = []
    if history_error is not None:
        # The runs were read: report them, say what is missing.
        notes.append(
            f"MLflow stopped answering while per-epoch histories were read ({history_error}); "
            "some training curves and epoch tables are missing."
        )
    if missing:
        notes.append("Runs asked for in the comparison but not found: " + ", ".join(missing))
    if any_runs and not any(r.rank is not None for r in rows):
        notes.append(f"No run has logged the ranking metric {rank.name!r}.")
    return notes


def protocol_note(
    ref: protocol.Reference | None, apart: list[protocol.Apart], runs: list[RunRecord]
) -> str | None:
    """Say what the runs are compared under, when some are left out or nothing is checked."""
    if ref is None:
        if not runs:
            return None
        return (
            "No run logs a protocol key (data digest, split, catalog size, evaluation "
            "version): the runs are ranked together without checking that they were "
            "evaluated alike."
        )
    if not apart:
        return None
    return (
        f"{len(apart)} finished runs were evaluated under another protocol than "
        f"{ref.source}'s (key {ref.key}) or logged none: they are listed apart on the "
        "leaderboard with what differs, and left out of ranks, the heatmap and the recall view."
    )


def all_notes(
    error: str | None,
    missing: list[str],
    runs: list[RunRecord],
    rows: list[aggregate.LeaderRow],
    rank: RankMetric,
    ref: protocol.Reference | None,
    apart: list[protocol.Apart],
) -> list[str]:
    """Every note the report adds to the reader's, in the order the dashboard shows them."""
    notes = reader_notes(error, missing, bool(runs), rows, rank)
    return notes + [n for n in (protocol_note(ref, apart, runs), non_finite_note(runs)) if n]
