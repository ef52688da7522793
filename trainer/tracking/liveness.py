"""When a run was last heard from, and when its silence means its process is gone.

A tracker holding a run open stamps ``contract.TAG_HEARTBEAT`` about every
``contract.HEARTBEAT_INTERVAL_S``; a RUNNING run silent for longer than a limit (its heartbeat,
else its start time) has lost its process. These rules are plain functions of a run's status,
tags and start time, so the report judges the runs it has read without asking MLflow again,
and ``lost.end_lost_runs`` judges the runs it ends the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from trainer import contract

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the heartbeat's form: UTC, ISO-8601 to the second


def stamp(moment: dt.datetime | None = None) -> str:
    """A heartbeat value: ``moment`` (default: now) in UTC, e.g. "2026-12-02T13:45:00Z"."""
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> dt.datetime | None:
    """A heartbeat value read back as an aware UTC time; None when it is no ISO-8601 time."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def last_heard_from(tags: Mapping[str, str], start_time_ms: int | None) -> dt.datetime | None:
    """A run's last sign of life: its heartbeat, else its start time (None: neither is known).

    Args:
        tags: The run's tags.
        start_time_ms: The run's start time in ms since the epoch (0 or None: unknown).
    """
    heard = parse_stamp(tags.get(contract.TAG_HEARTBEAT, ""))
    if heard is None and start_time_ms:
        heard = dt.datetime.fromtimestamp(start_time_ms / 1000, tz=dt.UTC)
    return heard


def lost_since(
    status: str,
    tags: Mapping[str, str],
    start_time_ms: int | None,
    lost_after_s: float,
    now: dt.datetime,
) -> dt.datetime | None:
    """When a lost run was last heard from; None for a run that is not lost.

    A run is lost when it is RUNNING and was last heard from more than ``lost_after_s``
    seconds before ``now``. A run whose last sign of life is unknown is not judged.
    """
    if status != contract.STATUS_RUNNING:
        return None
    heard = last_heard_from(tags, start_time_ms)
    if heard is None or (now - heard).total_seconds() <= lost_after_s:
        return None
    return heard


def lost_reason(last_heard: str, silent_s: float | None = None) -> str:
    """The ``failure_reason`` of a lost run (how long it was silent, when that is known)."""
    silent = f" ({round(silent_s / 60)} min)" if silent_s is not None else ""
    return (
        f"lost: no heartbeat since {last_heard}{silent}; the process died (out of memory, a "
        "preempted machine) without ending the run"
    )
