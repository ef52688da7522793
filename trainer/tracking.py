"""The one MLflow adapter of the trainer: runs, batched asynchronous logging, outage tolerance.

Everything the trainer sends to MLflow goes through ``RunTracker``. Metrics are queued and
flushed in batches (``MlflowClient.log_batch``) by a background thread, so training never
waits on the tracking server. If the server is unreachable the tracker says so loudly in
the log, keeps what it could not send in a local backlog file, and training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

log = logging.getLogger(__name__)

RUN_INFO_FILE = "mlflow_run.json"  # written next to the model: how later steps find the run
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VALUE = 6000
# MLflow's HTTP defaults retry a dead server for minutes per call; a tracker that gives up
# sooner (and then stops calling) keeps a tracking outage from stalling the step. Explicit
# settings in the environment win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def _tracking_errors() -> tuple[type[BaseException], ...]:
    import requests
    from mlflow.exceptions import MlflowException

    return (MlflowException, requests.RequestException, OSError)


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifact root for a new experiment in an embedded store: beside the SQLite file.

    Other stores (a server, a file store) decide their own artifact root: None.
    """
    if urlparse(tracking_uri).scheme != "sqlite":
        return None
    db_path = tracking_uri[len("sqlite:///") :]
    return "file://" + os.path.join(os.path.dirname(os.path.abspath(db_path)), "artifacts")


def get_or_create_experiment(client, name: str, tracking_uri: str) -> str:
    """Id of the named experiment, created (with a sensible artifact root) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=default_artifact_location(tracking_uri))


class RunTracker:
    """One MLflow run, logged asynchronously in batches; never raises on a tracking outage.

    Args:
        tracking_uri: Where the MLflow store is (sqlite:///..., http(s)://...). Empty: no tracking.
        experiment: Experiment name (created if missing).
        backlog_dir: Where metrics that could not be sent are kept (JSON lines).
        flush_interval_s: How often the background thread flushes queued metrics.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        backlog_dir: str | None = None,
        flush_interval_s: float = 2.0,
    ):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.backlog_dir = backlog_dir
        self.flush_interval_s = flush_interval_s
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.degraded_reason: str | None = None
        self._client = None
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether calls still go to MLflow (False when off or after an outage)."""
        return bool(self.tracking_uri) and self.degraded_reason is None

    def _degrade(self, action: str, err: BaseException) -> None:
        if self.degraded_reason is None:
            self.degraded_reason = f"{action}: {type(err).__name__}: {err}"
            log.error(
                "MLFLOW TRACKING UNAVAILABLE (%s). Training goes on; unsent metrics are "
                "kept in %s.",
                self.degraded_reason,
                self._backlog_path() or "the log",
            )

    def _call(self, action: str, fn, *args, **kwargs):
        """Calls ``fn`` (or the client method named by it) unless tracking is off or down."""
        if not self.enabled or (isinstance(fn, str) and self._client is None):
            return None
        if isinstance(fn, str):
            fn = getattr(self._client, fn)
        try:
            return fn(*args, **kwargs)
        except _tracking_errors() as err:
            self._degrade(action, err)
            return None

    def start(
        self, run_name: str, params: Mapping[str, object], tags: Mapping[str, str]
    ) -> str | None:
        """Creates the run and logs params and tags. Returns the run id (None when off)."""
        if not self.tracking_uri:
            return None
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_id = self._call(
            "get_or_create_experiment",
            get_or_create_experiment,
            self._client,
            self.experiment,
            self.tracking_uri,
        )
        if self.experiment_id is None:
            return None
        run = self._call(
            "create_run", "create_run", self.experiment_id, run_name=run_name, tags=dict(tags)
        )
        if run is None:
            return None
        self.run_id = run.info.run_id
        self.log_params(params)
        self._start_thread()
        return self.run_id

    def resume(self, run_id: str) -> None:
        """Attaches to an existing run (a later pipeline step adding its results)."""
        if not self.tracking_uri or not run_id:
            return
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        self.run_id = run_id
        self._start_thread()

    def log_params(self, params: Mapping[str, object]) -> None:
        """Logs params in batches of MLflow's per-request maximum."""
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:MAX_PARAM_VALUE]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._call(
                "log_params",
                "log_batch",
                self.run_id,
                params=items[start : start + MAX_PARAMS_PER_BATCH],
                synchronous=True,
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Sets tags on the run."""
        from mlflow.entities import RunTag

        self._call(
            "set_tags",
            "log_batch",
            self.run_id,
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
            synchronous=True,
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Queues metrics for the background thread; returns at once."""
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self._queue.put((key, float(value), now, int(step)))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Uploads a file or folder to the run's artifacts."""
        if os.path.isdir(path):
            self._call("log_artifacts", "log_artifacts", self.run_id, path, artifact_path)
        else:
            self._call("log_artifact", "log_artifact", self.run_id, path, artifact_path)

    def _start_thread(self) -> None:
        if self._thread is None and self.run_id:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mlflow-flush", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def _drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def flush(self) -> None:
        """Sends every queued metric now (called by the thread and on finish)."""
        from mlflow.entities import Metric

        with self._lock:
            items = self._drain()
            if not items:
                return
            if not self.enabled or self.run_id is None:
                self._write_backlog(items)
                return
            for start in range(0, len(items), MAX_METRICS_PER_BATCH):
                chunk = items[start : start + MAX_METRICS_PER_BATCH]
                metrics = [Metric(k, v, ts, step) for k, v, ts, step in chunk]
                sent = self._call(
                    "log_metrics", "log_batch", self.run_id, metrics=metrics, synchronous=True
                )
                if sent is None and not self.enabled:
                    self._write_backlog(items[start:])
                    return

    def _backlog_path(self) -> str | None:
        return os.path.join(self.backlog_dir, "mlflow_backlog.jsonl") if self.backlog_dir else None

    def _write_backlog(self, items: Iterable) -> None:
        path = self._backlog_path()
        if path is None:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for key, value, ts, step in items:
                f.write(
                    json.dumps({"key": key, "value": value, "timestamp": ts, "step": step}) + "\n"
                )

    def finish(self, status: str = "FINISHED") -> None:
        """Flushes, stops the thread and marks the run terminated."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        if self.run_id and self.degraded_reason:
            log.error("MLflow run %s is incomplete: %s", self.run_id, self.degraded_reason)
        if self.run_id and self._client is not None:
            self._call("set_terminated", "set_terminated", self.run_id, status)

    def write_run_info(self, folder: str, **extra) -> str:
        """Writes mlflow_run.json (run id, experiment, tracking URI) into a folder."""
        info = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment,
            "tracking_uri": self.tracking_uri,
            "tracking_degraded": self.degraded_reason,
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
