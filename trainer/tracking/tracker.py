"""The run tracker: runs logged in the background, outages healed.

Everything the trainer sends to MLflow goes through ``RunTracker``. Each call becomes an
operation (see ``trainer.tracking.send``) queued in order and sent by a background
thread, so training never waits on the tracking server. When the server does not answer,
the thread keeps trying with backoff; when it answers again the thread sends everything it
holds, in order, and carries on live. What is still unsent when the run finishes is appended
to the backlog file, which ``python -m trainer replay`` sends later. Every run ends FINISHED,
FAILED or KILLED (a SIGTERM, an exception, a process ending without ``finish``), tagged with
the reason, and tagged ``tracking_degraded`` with counts when anything was sent late or is
missing.

A process can also die without a chance to finish (the kernel's OOM killer, a preempted
machine: SIGKILL), so every accepted operation is first appended to the journal
(``trainer.tracking.journal``): replaying it sends what a killed step logged, once. While the
run is open its ``heartbeat_at`` tag is renewed about every ``contract.HEARTBEAT_INTERVAL_S``,
so a run whose process died is seen as lost.

Over 400 lines on purpose: the queue, the sending loop, ``finish`` and the signal and exit
handlers share one state (the pending operations and their counts); the operations
themselves live in ``trainer.tracking.send`` and the backlog in ``trainer.tracking.backlog``.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping

from trainer import contract
from trainer.tracking.backlog import append_backlog
from trainer.tracking.journal import Journal
from trainer.tracking.liveness import stamp
from trainer.tracking.send import (
    MAX_METRICS_PER_BATCH,
    RUN_OPS,
    RunSender,
    TrackingInputError,
    get_or_create_experiment,
    is_transient,
    metric_points,
    split_long_params,
)
from trainer.tracking.uri import TrackingUri

log = logging.getLogger(__name__)

__all__ = [
    "RUN_INFO_FILE",
    "RunTracker",
    "TrackingInputError",
    "get_or_create_experiment",
    "read_run_info",
]

RUN_INFO_FILE = contract.RUN_INFO_FILE  # written next to the model: how later steps find the run
MAX_BACKOFF_S = 30.0
# MLflow's HTTP defaults retry a dead server for minutes per call; the tracker retries on its
# own (in the background, with backoff), so each call may give up sooner. Explicit settings
# in the environment win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class RunTracker:
    """One MLflow run, logged in order in the background; never raises on a tracking outage.

    Args:
        tracking_uri: Where the MLflow store is (sqlite:///..., http(s)://...). Empty: no tracking.
        experiment: Experiment name (created if missing).
        backlog_dir: Where what could not be sent is kept (``contract.BACKLOG_FILE``).
        flush_interval_s: How often the background thread sends what is queued.
        heartbeat_interval_s: How often the run's ``heartbeat_at`` tag is renewed.

    Raises:
        ValueError: the tracking URI is malformed or of an unsupported kind.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        backlog_dir: str | None = None,
        flush_interval_s: float = 2.0,
        heartbeat_interval_s: float = contract.HEARTBEAT_INTERVAL_S,
    ):
        TrackingUri(tracking_uri)  # raises ValueError naming what is wrong
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.backlog_dir = backlog_dir
        self.flush_interval_s = flush_interval_s
        self.degraded_reason: str | None = None
        self.backlog_written: str | None = None
        self._sender: RunSender | None = None
        self._pending: collections.deque[dict] = collections.deque()
        self._lock = threading.RLock()  # guards the queue and counters (RLock: signal handler)
        self._send_lock = threading.RLock()  # one sender at a time, in order
        self._failures = 0  # failed attempts so far
        self._late = [0, 0]  # metric points, other operations sent after a failed attempt
        self._rejected: list[dict] = []
        self._blocked: str | None = None  # the run cannot be written at all (deleted, ...)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._opened = False
        self._finished = False
        self._previous_sigterm = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self._beat_at = 0.0  # monotonic time of the last heartbeat sent
        self._beats = False  # whether this tracker created (or took over) the run
        self._journal: Journal | None = None  # with backlog_dir

    @property
    def journal_path(self) -> str | None:
        """The journal file, when there is a ``backlog_dir``."""
        if self.backlog_dir is None:
            return None
        return os.path.join(self.backlog_dir, contract.JOURNAL_FILE)

    @property
    def run_id(self) -> str | None:
        """The MLflow run id, once the run exists in the store."""
        return self._sender.run_id if self._sender else None

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id, once known."""
        return self._sender.experiment_id if self._sender else None

    @property
    def pending_operations(self) -> int:
        """How many operations are queued and not sent yet (0: MLflow holds everything)."""
        with self._lock:
            return len(self._pending)

    def _open(self, first_op: dict) -> None:
        self._sender = RunSender(None, self.tracking_uri)
        self._opened = True
        self._beats = first_op["op"] == "create_run"
        if self.backlog_dir is not None:
            header = {"experiment": self.experiment, "tracking_uri": self.tracking_uri}
            self._journal = Journal(self.backlog_dir, header)
        self._enqueue(first_op)
        self._install_handlers()

    def start(
        self,
        run_name: str,
        params: Mapping[str, object],
        tags: Mapping[str, str],
        run_key: str = "",
    ) -> str | None:
        """Creates the run (or reuses the one tagged ``run_key``) with its params and tags.

        Returns:
            The run id, or None when tracking is off or the store did not answer yet (the run
            is then created in the background once it does).
        """
        if not self.tracking_uri:
            return None
        if "'" in run_key or "\\" in run_key:
            raise ValueError(f"run_key {run_key!r} may not hold quotes or backslashes")
        self._open(
            {
                "op": "create_run",
                "experiment": self.experiment,
                "run_name": run_name,
                # Without a caller's key a random one still makes a retried create idempotent.
                "run_key": run_key or uuid.uuid4().hex,
                "tags": {str(k): str(v) for k, v in tags.items()},
            }
        )
        self.log_params(params)
        self._pump()
        self._start_thread()
        return self.run_id

    def resume(self, run_id: str) -> None:
        """Attaches to an existing run (a later pipeline step adding its results)."""
        if not self.tracking_uri or not run_id:
            return
        self._open({"op": "resume", "run_id": run_id})
        self._pump()
        self._start_thread()

    def log_params(self, params: Mapping[str, object]) -> None:
        """Queues params; a value over MLflow's limit is also kept whole as an artifact."""
        if not self._opened or not params:
            return
        # Whole over-long values must outlive the step when there is a backlog to replay.
        base = self.backlog_dir or os.path.join(tempfile.gettempdir(), f"mlflow-{uuid.uuid4().hex}")
        full_dir = os.path.join(base, "params_full")
        values, artifacts = split_long_params(params, full_dir)
        self._enqueue({"op": "params", "params": values})
        for op in artifacts:
            self._enqueue(op)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Queues tags."""
        if self._opened and tags:
            self._enqueue({"op": "tags", "tags": {str(k): str(v) for k, v in tags.items()}})

    def log_metrics(
        self, metrics: Mapping[str, float], step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Queues metric points (NaN and infinities as they are); returns at once.

        Args:
            metrics: Name to value.
            step: The points' step.
            timestamp_ms: The points' time (default: now). A point logged again with the same
                step and time (a resumed training) is sent once: a taken-over run is sent to
                carefully, skipping points it holds.
        """
        if not self._opened or not metrics:
            return
        now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
        points = [[str(k), float(v), now, int(step)] for k, v in metrics.items()]
        self._enqueue({"op": "metrics", "metrics": points})

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Queues the upload of a file or folder to the run's artifacts."""
        if self._opened:
            self._enqueue(
                {"op": "artifact", "path": os.path.abspath(path), "artifact_path": artifact_path}
            )

    def flush(self) -> bool:
        """Tries once, now, to send everything queued. Returns whether nothing is left."""
        return self._pump()

    def _enqueue(self, op: dict) -> None:
        with self._lock:
            sync = op["op"] in ("metrics", "artifact")
            op["_line"] = self._journal.write(op, sync) if self._journal else -1
            op["_failures_before"] = self._failures
            op["_tries"] = 0
            self._pending.append(op)

    def _next_batch(self, single: bool) -> list[dict]:
        """The head operation, with the metrics ops right behind it when it is one too."""
        with self._lock:
            batch = [self._pending[0]]
            points = metric_points(batch)
            for op in list(self._pending)[1:]:
                if single or batch[0]["op"] != "metrics" or op["op"] != "metrics":
                    break
                points += len(op["metrics"])
                if points > MAX_METRICS_PER_BATCH:
                    break
                batch.append(op)
        return batch

    def _pump(self) -> bool:
        """Sends queued operations in order until none is left or the store fails."""
        single = False  # after a rejected batch, one operation at a time finds the culprit
        with self._send_lock:
            while True:
                with self._lock:
                    if not self._pending or self._blocked:
                        self._save_progress()
                        return not self._pending
                batch = self._next_batch(single)
                op = batch[0]
                if len(batch) > 1:
                    # Points held through an outage go out in as few requests as they fit.
                    op = {"op": "metrics", "metrics": [p for o in batch for p in o["metrics"]]}
                try:
                    self._sender.send(op, careful=any(o["_tries"] for o in batch))
                except Exception as err:  # noqa: BLE001 - training must never die of tracking
                    for queued in batch:
                        queued["_tries"] += 1
                    if len(batch) > 1 and not is_transient(err):
                        single = True
                        continue
                    if not self._on_error(batch[0], err):
                        self._save_progress()
                        return False
                    continue
                for queued in batch:
                    self._on_sent(queued)
                if op["op"] in RUN_OPS:
                    self._beat()

    def _on_sent(self, op: dict) -> None:
        with self._lock:
            self._pending.popleft()
            if self._journal:
                self._journal.sent(op["_line"])
            if self._failures > op["_failures_before"]:
                if op["op"] == "metrics":
                    self._late[0] += len(op["metrics"])
                else:
                    self._late[1] += 1

    def _on_error(self, op: dict, err: Exception) -> bool:
        """Records a failed send. Returns whether to go on with the next operation."""
        text = f"{op['op']}: {type(err).__name__}: {err}"
        if op["op"] == "create_run" and not isinstance(err, TrackingInputError):
            text = f"get_or_create_experiment/{text}"  # the first call any run makes
        if self.degraded_reason is None:
            self.degraded_reason = text
        if is_transient(err):
            with self._lock:
                self._failures += 1
                first = self._failures == 1
            if first or op["_tries"] == 1:
                log.error(
                    "MLFLOW TRACKING UNAVAILABLE (%s). Training goes on; %d operation(s) are "
                    "held and retried in the background.",
                    text,
                    len(self._pending),
                )
            return False
        if op["op"] in RUN_OPS:
            self._blocked = self.degraded_reason = str(err)
            log.error("MLflow run cannot be written: %s. Everything is kept in the backlog.", err)
            return False
        log.error("MLflow rejected %s: %s (kept in the backlog as rejected)", op["op"], err)
        with self._lock:
            self._pending.popleft()
            if self._journal:
                self._journal.sent(op["_line"])  # the backlog keeps it
            original = {k: v for k, v in op.items() if not k.startswith("_")}
            self._rejected.append({"op": "rejected", "error": str(err), "original": original})
        return True

    def _start_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mlflow-send", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        """Renews the run's ``heartbeat_at`` tag (not journaled: only its latest value counts)."""
        if not self._beats or self._sender is None or self._sender.run_id is None:
            return
        self._beat_at = time.monotonic()
        now = stamp()
        try:
            with self._send_lock:
                self._sender.send({"op": "tags", "tags": {contract.TAG_HEARTBEAT: now}})
        except Exception as err:  # noqa: BLE001 - an outage: the next beat tries again
            log.debug("heartbeat not sent: %s", err)

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.wait(backoff or self.flush_interval_s):
            if time.monotonic() - self._beat_at >= self.heartbeat_interval_s and not backoff:
                self._beat()
            if self._pump():
                if backoff:
                    log.warning("MLflow answers again; everything held has been sent.")
                backoff = 0.0
            else:
                backoff = min(max(2 * backoff, 1.0), MAX_BACKOFF_S)

    def _missing(self) -> tuple[int, int]:
        with self._lock:
            pending = list(self._pending)
        metric_ops = [op for op in pending if op["op"] == "metrics"]
        return metric_points(pending), len(pending) - len(metric_ops) + len(self._rejected)

    def _degraded_tag(self) -> str:
        missing = self._missing()
        return (
            f"{self._late[0]} metric point(s) and {self._late[1]} other operation(s) sent late; "
            f"{missing[0]} metric point(s) and {missing[1]} other operation(s) still missing; "
            f"first error: {self.degraded_reason}"
        )[:8000]

    def finish(self, status: str = contract.STATUS_FINISHED, reason: str = "") -> None:
        """Ends the run: sends what it can, keeps the rest in the backlog, sets the status.

        Args:
            status: FINISHED, FAILED or KILLED.
            reason: Why a run did not finish (tagged ``failure_reason``). Default for a
                non-FINISHED status: the exception being handled, if any.
        """
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        self._restore_handlers()
        if not self._opened:
            return
        if not reason and status != contract.STATUS_FINISHED:
            error = sys.exc_info()[1]
            reason = f"{type(error).__name__}: {error}" if error is not None else ""
        sent = self._pump()
        if self.degraded_reason is not None:
            self._enqueue(
                {"op": "tags", "tags": {contract.TAG_TRACKING_DEGRADED: self._degraded_tag()}}
            )
        self._enqueue({"op": "terminate", "status": status, "reason": reason[:8000]})
        if sent:
            self._pump()
        self._write_backlog()
        self._close_journal()

    def _save_progress(self) -> None:
        if self._journal:
            self._journal.save_progress(self.run_id)

    def _close_journal(self) -> None:
        if self._journal:
            self._journal.close(self.run_id)
            self._journal = None

    def _write_backlog(self) -> None:
        with self._lock:
            left = list(self._pending) + self._rejected
        if not left:
            return
        points = metric_points(left)
        if self.backlog_dir is None:
            log.error(
                "MLflow run %s: %d operation(s) (%d metric points) are lost: no backlog_dir",
                self.run_id,
                len(left),
                points,
            )
            return
        path = os.path.join(self.backlog_dir, contract.BACKLOG_FILE)
        header = {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "late_points": self._late[0],
            "reason": self.degraded_reason,
        }
        append_backlog(path, header, left)
        self.backlog_written = path
        log.error(
            "MLflow run %s is incomplete (%s): %d operation(s), %d metric point(s) kept in %s; "
            "send them with: python -m trainer replay %s",
            self.run_id,
            self.degraded_reason,
            len(left),
            points,
            path,
            path,
        )

    def _install_handlers(self) -> None:
        atexit.register(self._at_exit)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_handlers(self) -> None:
        atexit.unregister(self._at_exit)
        if (
            threading.current_thread() is threading.main_thread()
            and self._previous_sigterm is not None
            and signal.getsignal(signal.SIGTERM) == self._on_sigterm
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def _at_exit(self) -> None:
        self.finish(contract.STATUS_FAILED, "the process ended without finishing the run")

    def _on_sigterm(self, signum: int, frame) -> None:
        # Vertex cancels a job with SIGTERM: end the run KILLED, then do what was set before.
        previous = self._previous_sigterm
        self.finish(contract.STATUS_KILLED, f"terminated by signal {signal.Signals(signum).name}")
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def write_run_info(self, folder: str, **extra) -> str:
        """Writes mlflow_run.json (run id, experiment, tracking URI, backlog) into a folder."""
        info = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "tracking_degraded": self.degraded_reason,
            "backlog": self.backlog_written,
            **extra,
        }
        path = os.path.join(folder, RUN_INFO_FILE)
        os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        return path


def read_run_info(folder: str) -> dict:
    """Reads mlflow_run.json from a model folder."""
    with open(os.path.join(folder, RUN_INFO_FILE), encoding="utf-8") as f:
        return json.load(f)
