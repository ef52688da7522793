"""The backlog: what a run could not send to MLflow, kept in a file and replayed from it.

What could not be sent is appended to the backlog file (``contract.BACKLOG_FILE``, JSON
lines): a ``session`` header (run id if known, experiment, tracking URI, counts), then the
operations (see ``trainer.tracking.send``). ``replay`` sends a backlog and records in
``<backlog>.progress`` how many lines are done; it sends carefully (skipping what the run
already holds), so replaying twice sends nothing twice even without that record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator

from trainer import contract
from trainer.tracking.send import (
    MAX_TAG_VALUE,
    RUN_OPS,
    RunSender,
    TrackingInputError,
    metric_points,
    open_client,
)
from trainer.tracking.uri import TrackingUri

log = logging.getLogger(__name__)

__all__ = [
    "ReplayResult",
    "append_backlog",
    "backlog_path",
    "metric_points",
    "replay",
    "update_run_info",
]

PROGRESS_SUFFIX = ".progress"


def backlog_path(path: str) -> str:
    """The backlog file itself, given it or the folder holding it."""
    return os.path.join(path, contract.BACKLOG_FILE) if os.path.isdir(path) else path


def append_backlog(path: str, header: dict, ops: list[dict]) -> None:
    """Appends one session (header, then its operations) to the backlog file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"op": "session", **header}) + "\n")
        for op in ops:
            f.write(json.dumps({k: v for k, v in op.items() if not k.startswith("_")}) + "\n")


def _read_lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    # Backlogs written before operations existed held bare metric points: one metrics op each.
    return [
        line
        if "op" in line
        else {
            "op": "metrics",
            "metrics": [[line["key"], line["value"], line["timestamp"], line["step"]]],
        }
        for line in lines
    ]


def _progress(path: str) -> int:
    try:
        with open(path + PROGRESS_SUFFIX, encoding="utf-8") as f:
            return int(json.load(f)["done_lines"])
    except FileNotFoundError:
        return 0


def _save_progress(path: str, done: int, run_id: str | None) -> None:
    tmp = path + PROGRESS_SUFFIX + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"done_lines": done, "run_id": run_id, "at": time.time()}, f)
    os.replace(tmp, path + PROGRESS_SUFFIX)


@dataclasses.dataclass
class ReplayResult:
    """What one replay did."""

    backlog: str
    run_ids: list[str]
    lines_sent: int = 0
    points_sent: int = 0
    ops_sent: int = 0  # operations MLflow accepted (metric batches, params, tags, artifacts)
    rejected: list[str] = dataclasses.field(default_factory=list)


def _sessions(lines: list[dict], start: int) -> Iterator[tuple[int, dict, dict | None]]:
    """(line number, op, its session header) from line ``start`` on."""
    header = None
    for number, op in enumerate(lines):
        if op["op"] == "session":
            header = op
        if number >= start:
            yield number, op, header


def _degraded_text(header: dict, replayed: int, sent: int, rejected: int) -> str:
    return (
        f"{header.get('late_points', 0) + replayed} metric point(s) sent late "
        f"({replayed} by replay), {sent} operation(s) sent by replay, "
        f"{rejected} operation(s) still missing; "
        f"first error: {header.get('reason') or 'none recorded'}"
    )[:MAX_TAG_VALUE]


def replay(path: str, tracking_uri: str = "") -> ReplayResult:
    """Sends a backlog (a file or the folder holding it) to MLflow; safe to run again.

    Args:
        path: The backlog file or its folder (a model or evaluation folder).
        tracking_uri: The store to send to; default: the one each session names.

    Raises:
        FileNotFoundError: no backlog there.
        TrackingInputError: the run or experiment cannot be written (deleted, missing).
        MlflowException, requests.RequestException: the store is unreachable (run again later;
            what was sent is recorded).
    """
    file = backlog_path(path)
    lines = _read_lines(file)
    done = _progress(file)
    result = ReplayResult(backlog=file, run_ids=[])
    sender, header, counted = None, None, (0, 0, 0)
    for number, op, session in _sessions(lines, done):
        if session is not header or sender is None:
            _finish_session(sender, header, result, counted)
            header = session or {}
            uri = tracking_uri or header.get("tracking_uri") or ""
            TrackingUri(uri)  # raises ValueError naming what is wrong
            sender = RunSender(open_client(uri), uri, header.get("run_id"))
            counted = (result.points_sent, len(result.rejected), result.ops_sent)
        if op["op"] not in ("session", "rejected"):
            try:
                sender.send(op, careful=True)
                result.ops_sent += 1
            except TrackingInputError as err:
                if op["op"] in RUN_OPS:
                    raise
                log.error("replay: %s rejected: %s", op["op"], err)
                result.rejected.append(f"line {number + 1}: {err}")
        result.lines_sent += 1
        _save_progress(file, number + 1, sender.run_id)
    _finish_session(sender, header, result, counted)
    return result


def _finish_session(sender, header, result: ReplayResult, counted: tuple[int, int]) -> None:
    """Notes the session's run and re-tags it degraded with the replay's counts."""
    if sender is None or sender.run_id is None:
        return
    if sender.run_id not in result.run_ids:
        result.run_ids.append(sender.run_id)
    replayed = sender.points_sent
    result.points_sent += replayed
    rejected = len(result.rejected) - counted[1]
    sent = result.ops_sent - counted[2]  # artifacts, params, tags too, not only metric points
    if sent or rejected:
        from mlflow.entities import RunTag

        text = _degraded_text(header or {}, replayed, sent, rejected)
        sender.client.log_batch(sender.run_id, tags=[RunTag(contract.TAG_TRACKING_DEGRADED, text)])


def update_run_info(path: str, result: ReplayResult) -> None:
    """Fills the run id into a folder's mlflow_run.json when the run was created by a replay."""
    info_path = os.path.join(
        os.path.dirname(os.path.abspath(result.backlog)), contract.RUN_INFO_FILE
    )
    if not os.path.isdir(path) or not os.path.exists(info_path) or len(result.run_ids) != 1:
        return
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    if info.get("run_id"):
        return
    info["run_id"] = result.run_ids[0]
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
