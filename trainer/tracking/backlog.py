"""The backlog: what a run could not send to MLflow, kept in a file and replayed from it.

What could not be sent is appended to the backlog file (``contract.BACKLOG_FILE``, JSON
lines): a ``session`` header (run id if known, experiment, tracking URI, counts), then the
operations (see ``trainer.tracking.send``). ``replay`` sends a backlog and records in
``<backlog>.progress`` how many lines are done; it sends carefully (skipping what the run
already holds), so replaying twice sends nothing twice even without that record.

The journal (``contract.JOURNAL_FILE``) has the same format and holds every operation a
tracker accepted; the tracker itself records its progress as MLflow takes them. Replaying a
folder sends what its journal holds beyond that progress (what a killed step logged), then its
backlog. A journal session that never ended its run (its process was killed) gets its run
ended FAILED, saying so, unless a live step has taken the run over since.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Iterator

from trainer import contract
from trainer.tracking.liveness import parse_stamp
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
    "read_progress",
    "replay",
    "save_progress",
    "unsent_lines",
    "update_run_info",
]

PROGRESS_SUFFIX = ".progress"


def backlog_path(path: str) -> str:
    """The backlog file itself, given it or the folder holding it."""
    return os.path.join(path, contract.BACKLOG_FILE) if os.path.isdir(path) else path


def _files_to_replay(path: str) -> list[str]:
    """A file as given; for a folder, its journal (if any line is unsent) and its backlog."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        return [path]
    journal = os.path.join(path, contract.JOURNAL_FILE)
    backlog = os.path.join(path, contract.BACKLOG_FILE)
    if not os.path.exists(journal) and not os.path.exists(backlog):
        raise FileNotFoundError(f"{backlog} (nor {contract.JOURNAL_FILE})")
    return [f for f in (journal, backlog) if os.path.exists(f)]


def unsent_lines(path: str) -> int:
    """How many lines of a folder's journal and backlog (or of one file) are not sent yet."""
    try:
        files = _files_to_replay(path)
    except FileNotFoundError:
        return 0
    return sum(max(0, len(_read_lines(f)) - read_progress(f)) for f in files)


def append_backlog(path: str, header: dict, ops: list[dict]) -> None:
    """Appends one session (header, then its operations) to the backlog file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"op": "session", **header}) + "\n")
        for op in ops:
            f.write(json.dumps({k: v for k, v in op.items() if not k.startswith("_")}) + "\n")


def _parse(line: str, number: int, path: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        # A line cut by a kill while it was written: it was never queued, nothing is lost.
        log.warning("%s line %d is not a whole operation (cut by a kill?); skipped", path, number)
        return {"op": "unreadable"}


def _read_lines(path: str) -> list[dict]:
    """The file's operations, one per line (line numbers are what progress counts)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [
            _parse(line, number + 1, path) if line.strip() else {"op": "blank"}
            for number, line in enumerate(f)
        ]
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


def read_progress(path: str) -> int:
    """How many lines of a backlog or journal are sent (0 when none is recorded)."""
    try:
        with open(path + PROGRESS_SUFFIX, encoding="utf-8") as f:
            return int(json.load(f)["done_lines"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def save_progress(path: str, done: int, run_id: str | None) -> None:
    """Records that the first ``done`` lines of a backlog or journal are sent."""
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
    ended: list[str] = dataclasses.field(default_factory=list)  # runs ended FAILED (killed)


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


def replay(path: str, tracking_uri: str = "", end_unfinished: bool = True) -> ReplayResult:
    """Sends a backlog or journal (a file, or the folder holding them) to MLflow; safe to rerun.

    Args:
        path: The backlog or journal file, or their folder (a model or evaluation folder).
        tracking_uri: The store to send to; default: the one each session names.
        end_unfinished: End FAILED the run of a journal session whose process died without
            ending it (False for the retried step, which takes the run over right after).

    Raises:
        FileNotFoundError: no backlog or journal there.
        TrackingInputError: the run or experiment cannot be written (deleted, missing).
        MlflowException, requests.RequestException: the store is unreachable (run again later;
            what was sent is recorded).
    """
    files = _files_to_replay(path)
    result = ReplayResult(backlog=files[-1], run_ids=[])
    for file in files:
        journal = os.path.basename(file) == contract.JOURNAL_FILE
        _replay_file(file, tracking_uri, result, end_unfinished and journal)
    return result


def _replay_file(file: str, tracking_uri: str, result: ReplayResult, end_unfinished: bool) -> None:
    lines = _read_lines(file)
    done = read_progress(file)
    sender, header, counted = None, None, (0, 0, 0)
    for number, op, session in _sessions(lines, done):
        if session is not header or sender is None:
            _finish_session(sender, header, result, counted)
            _end_if_unfinished(sender, lines, header, end_unfinished, result)
            header = session or {}
            uri = tracking_uri or header.get("tracking_uri") or ""
            TrackingUri(uri)  # raises ValueError naming what is wrong
            sender = RunSender(open_client(uri), uri, header.get("run_id"), keep_status=True)
            counted = (result.points_sent, len(result.rejected), result.ops_sent)
            if op["op"] != "session":  # resumed mid-session: find its run again first
                _send_run_op(sender, lines, header)
        if op["op"] not in ("session", "rejected", "unreadable", "blank"):
            try:
                sender.send(op, careful=True)
                result.ops_sent += 1
            except TrackingInputError as err:
                if op["op"] in RUN_OPS:
                    raise
                log.error("replay: %s rejected: %s", op["op"], err)
                result.rejected.append(f"line {number + 1}: {err}")
        result.lines_sent += 1
        save_progress(file, number + 1, sender.run_id)
    _finish_session(sender, header, result, counted)
    _end_if_unfinished(sender, lines, header, end_unfinished, result)
    if sender is None and end_unfinished:
        _end_sent_session(file, lines, tracking_uri, result)


def _end_sent_session(file: str, lines: list[dict], tracking_uri: str, result) -> None:
    """Ends FAILED the last session's run when the dead process had sent all it journaled.

    The live tracker moves the progress record as MLflow takes each line, so a process killed
    right after its last send leaves nothing to replay; its run must still be ended (a kill
    between an epoch's checkpoint and its points: tests/integration/trainer/test_train_kills).
    The run is the one the progress record names; nothing is sent but the ending.
    """
    header = next((op for op in reversed(lines) if op["op"] == "session"), None)
    if header is None or not _unended(_session_ops(lines, header)):
        return
    run_id = read_progress_run_id(file)
    if not run_id:
        return
    uri = tracking_uri or header.get("tracking_uri") or ""
    TrackingUri(uri)  # raises ValueError naming what is wrong
    sender = RunSender(open_client(uri), uri, run_id, keep_status=True)
    _end_if_unfinished(sender, lines, header, True, result)


def read_progress_run_id(path: str) -> str | None:
    """The run the progress record of a backlog or journal names (None when none is)."""
    try:
        with open(path + PROGRESS_SUFFIX, encoding="utf-8") as f:
            run_id = json.load(f).get("run_id")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) else None


def _session_ops(lines: list[dict], header: dict | None) -> list[dict]:
    """The operations of the session that ``header`` opens (identity, not equality)."""
    ops, inside = [], False
    for op in lines:
        if op["op"] == "session":
            if inside:
                break
            inside = op is header
        elif inside:
            ops.append(op)
    return ops


def _send_run_op(sender: RunSender, lines: list[dict], header: dict) -> None:
    """Sends the session's create_run/resume again (careful: finds the run, creates nothing)."""
    if sender.run_id is not None:
        return
    for op in _session_ops(lines, header):
        if op["op"] in RUN_OPS:
            sender.send(op, careful=True)
            return


def _end_if_unfinished(sender, lines, header, enabled: bool, result: ReplayResult) -> None:
    """Ends FAILED the run of a journal session killed before it ended the run.

    Not when a later session of the journal took the run over, nor while the run's process
    still lives (same host: its pid; elsewhere: a heartbeat younger than two intervals).
    """
    if not enabled or sender is None or sender.run_id is None or header is None:
        return
    ops = _session_ops(lines, header)
    if not _unended(ops):
        return
    at = next(i for i, op in enumerate(lines) if op is header)
    later = lines[at + 1 + len(ops) :]
    if any(op["op"] == "session" for op in later):
        return
    run = sender.client.get_run(sender.run_id)
    if run.info.status != contract.STATUS_RUNNING or _alive(header, run):
        return
    reason = (
        "the process died without ending the run (killed: out of memory, a preempted "
        "machine?); what it had logged was sent by replay from its journal"
    )
    from mlflow.entities import RunTag

    sender.client.log_batch(sender.run_id, tags=[RunTag(contract.TAG_FAILURE_REASON, reason)])
    sender.client.set_terminated(sender.run_id, contract.STATUS_FAILED)
    result.ended.append(sender.run_id)
    log.warning("replay: run %s ended FAILED: %s", sender.run_id, reason)


def _unended(ops: list[dict]) -> bool:
    """Whether a session created its run and never ended it."""
    kinds = {op["op"] for op in ops}
    return "create_run" in kinds and "terminate" not in kinds


def _alive(header: dict, run) -> bool:
    """Whether the session's process may still be running."""
    if header.get("host") == socket.gethostname() and header.get("pid"):
        try:
            os.kill(int(header["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    beat = parse_stamp(run.data.tags.get(contract.TAG_HEARTBEAT, ""))
    return beat is not None and time.time() - beat.timestamp() < 2 * contract.HEARTBEAT_INTERVAL_S


def _finish_session(sender, header, result: ReplayResult, counted: tuple[int, int]) -> None:
    """Notes the session's run and re-tags it degraded with the replay's counts."""
    if sender is None or sender.run_id is None:
        return
    if sender.run_id not in result.run_ids:
        result.run_ids.append(sender.run_id)
    replayed = sender.points_sent
    result.points_sent += replayed
    sender.points_sent = 0
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
