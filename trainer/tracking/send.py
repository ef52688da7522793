"""What the tracker sends to MLflow, as replayable operations, and how it sends them.

Every call on ``RunTracker`` becomes one operation (a JSON-able dict: ``create_run``,
``resume``, ``params``, ``tags``, ``metrics``, ``artifact``, ``terminate``). ``RunSender``
sends them in order to one store, idempotently when asked to be careful: a run is found again
by its ``run_key`` tag, params already equal are skipped, metric points already in the run's
history (same key, step and timestamp) are not sent twice, artifacts overwrite themselves.
Errors are told apart: an outage (try again later) from a request MLflow will never accept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from trainer import contract
from trainer.tracking.uri import TrackingUri

log = logging.getLogger(__name__)

MAX_PARAMS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
MAX_PARAM_VALUE = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_VALUE = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
PARAMS_ARTIFACT_DIR = "params"
# MLflow error codes that describe the server or the network, not the request: try again.
TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_ERROR",
        "TEMPORARILY_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "UNAVAILABLE",
        "RESOURCE_EXHAUSTED",
        "UNAUTHENTICATED",  # an expired ID token: the header provider fetches a new one
    }
)
# Operations without which nothing else of the run can be sent.
RUN_OPS = ("create_run", "resume")


class TrackingInputError(ValueError):
    """A request MLflow will never accept as it is (deleted experiment or run, bad value)."""


def is_transient(err: BaseException) -> bool:
    """Whether a failed call may succeed later unchanged (outage) or never will (bad input)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, TrackingInputError):
        return False
    if isinstance(err, MlflowException):
        return err.error_code in TRANSIENT_CODES
    from sqlalchemy.exc import OperationalError

    # A database store that is locked, unreachable or being created by another process.
    return isinstance(err, (requests.RequestException, OSError, OperationalError))


def open_client(tracking_uri: str | TrackingUri):
    """An ``MlflowClient`` for the store; an embedded SQLite store is opened under a file lock.

    Opening a new SQLite store creates its schema. Processes that open the same new store at
    once (a sweep's trainings) each run that migration, and the loser leaves the database
    half-migrated (``table _alembic_tmp_params already exists``) for every later client. The
    lock beside the database file makes the first opener create it and the others wait.
    """
    from mlflow.tracking import MlflowClient

    db_path = TrackingUri(str(tracking_uri)).sqlite_path
    if db_path is None:
        return MlflowClient(tracking_uri=str(tracking_uri))
    import fcntl

    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    with open(db_path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return MlflowClient(tracking_uri=str(tracking_uri))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _active_experiment_id(experiment, name: str, tracking_uri: str) -> str:
    if experiment.lifecycle_stage != "active":
        raise TrackingInputError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted in "
            f"{tracking_uri}: restore it (mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}) or use another experiment name"
        )
    return experiment.experiment_id


def get_or_create_experiment(client, name: str, tracking_uri: str) -> str:
    """Id of the named experiment, created if missing; race-free across processes.

    Two writers may both miss the experiment and both create it: the loser's "already exists"
    answer means "use it", so it reads the winner's experiment by name.

    Raises:
        TrackingInputError: the experiment exists but is deleted.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return _active_experiment_id(experiment, name, tracking_uri)
    try:
        return client.create_experiment(
            name, artifact_location=TrackingUri(tracking_uri).default_artifact_location
        )
    except MlflowException:
        # RESOURCE_ALREADY_EXISTS, or a unique-key violation some stores report otherwise.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return _active_experiment_id(experiment, name, tracking_uri)


def split_long_params(
    params: Mapping[str, object], full_value_dir: str
) -> tuple[dict[str, str], list[dict]]:
    """Params as MLflow strings; a value over MLflow's limit is kept whole as an artifact.

    Returns the params (an over-long value cut, with a marker saying where the whole value
    is) and the ``artifact`` operations uploading each whole value as params/<key>.txt.
    """
    out, artifacts = {}, []
    for key, value in params.items():
        key, text = str(key), str(value)
        if len(text) <= MAX_PARAM_VALUE:
            out[key] = text
            continue
        file_name = key.replace("/", "_").replace(os.sep, "_") + ".txt"
        os.makedirs(full_value_dir, exist_ok=True)
        path = os.path.join(full_value_dir, file_name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        marker = (
            f"...[truncated: {len(text)} chars; whole value in artifact "
            f"{PARAMS_ARTIFACT_DIR}/{file_name}]"
        )
        out[key] = text[: MAX_PARAM_VALUE - len(marker)] + marker
        artifacts.append({"op": "artifact", "path": path, "artifact_path": PARAMS_ARTIFACT_DIR})
    return out, artifacts


def metric_points(ops) -> int:
    """How many metric points the operations hold."""
    return sum(len(op.get("metrics", ())) for op in ops if op.get("op") == "metrics")


class RunSender:
    """Sends one run's operations, in order, to one MLflow store.

    Args:
        client: An ``MlflowClient`` for ``tracking_uri``; None: made at the first send, so a
            store that cannot be opened yet (a server down, an embedded store another
            process is creating) is retried like any other outage.
        tracking_uri: The store (named in error messages, picks a new experiment's artifacts).
        run_id: The run, when it exists already (else a ``create_run``/``resume`` op sets it).
        keep_status: A ``create_run`` that finds its run leaves the run's status as it is (a
            replay); else it sets the run RUNNING again (a step taking the run over).
    """

    def __init__(
        self, client, tracking_uri: str, run_id: str | None = None, keep_status: bool = False
    ):
        self._client = client
        self.keep_status = keep_status
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.experiment_id: str | None = None
        self.reused = False  # the run existed before this sender: params may be there already
        self.points_sent = 0
        self._history: dict[str, set] = {}

    @property
    def client(self):
        """The MLflow client, opened on first use."""
        if self._client is None:
            self._client = open_client(self.tracking_uri)
        return self._client

    def send(self, op: dict, careful: bool = False) -> None:
        """Sends one operation; raises what the client raised (see ``is_transient``).

        Args:
            op: The operation.
            careful: Skip what the run already holds (a retry or a replay).
        """
        kind = op["op"]
        if kind not in RUN_OPS and self.run_id is None:
            raise TrackingInputError(
                f"no MLflow run to send {kind!r} to (the run was never created)"
            )
        getattr(self, f"_send_{kind}")(op, careful or self.reused)

    def _send_create_run(self, op: dict, careful: bool) -> None:
        from mlflow.entities import RunTag, ViewType
        from mlflow.exceptions import MlflowException

        from trainer.tracking.liveness import stamp

        self.experiment_id = get_or_create_experiment(
            self.client, op["experiment"], self.tracking_uri
        )
        tags = {**op.get("tags", {}), contract.TAG_RUN_KEY: op["run_key"]}
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{contract.TAG_RUN_KEY} = '{op['run_key']}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1,
        )
        if found:
            self.run_id = found[0].info.run_id
            self.reused = True
            if self.keep_status:  # a replay: the run's status and liveness stay as they were
                self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
                return
            # Taking the run over: heard from now before it is RUNNING again (so a report
            # ending silent runs meanwhile leaves it alone), then no longer lost, nor failed
            # for the reason the earlier attempt gave (this attempt ends it with its own).
            tags[contract.TAG_HEARTBEAT] = stamp()
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            self.client.update_run(self.run_id, status=contract.STATUS_RUNNING)
            for stale in (contract.TAG_LOST, contract.TAG_FAILURE_REASON):
                if stale not in found[0].data.tags:
                    continue
                try:
                    self.client.delete_tag(self.run_id, stale)
                except MlflowException as err:
                    if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # else: another took it over
                        raise
            return
        run = self.client.create_run(self.experiment_id, run_name=op.get("run_name"), tags=tags)
        self.run_id = run.info.run_id

    def _send_resume(self, op: dict, careful: bool) -> None:
        from mlflow.exceptions import MlflowException

        run_id = op["run_id"]
        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise TrackingInputError(
                f"MLflow run {run_id} does not exist in {self.tracking_uri}"
            ) from None
        if run.info.lifecycle_stage != "active":
            raise TrackingInputError(
                f"MLflow run {run_id} is deleted in {self.tracking_uri}: restore it "
                f"(mlflow runs restore --run-id {run_id}) to add to it"
            )
        self.run_id, self.experiment_id, self.reused = run_id, run.info.experiment_id, True

    def _send_params(self, op: dict, careful: bool) -> None:
        from mlflow.entities import Param

        params = dict(op["params"])
        if careful:
            existing = self.client.get_run(self.run_id).data.params
            clashes = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
            if clashes:
                raise TrackingInputError(
                    f"MLflow run {self.run_id} already has other values for param(s) "
                    f"{', '.join(clashes)}; params cannot change once logged"
                )
            params = {k: v for k, v in params.items() if k not in existing}
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def _send_tags(self, op: dict, careful: bool) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in op["tags"].items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + MAX_PARAMS_PER_BATCH])

    def _seen(self, key: str) -> set:
        if key not in self._history:
            history = self.client.get_metric_history(self.run_id, key)
            self._history[key] = {(m.step, m.timestamp) for m in history}
        return self._history[key]

    def _send_metrics(self, op: dict, careful: bool) -> None:
        from mlflow.entities import Metric

        points = [tuple(p) for p in op["metrics"]]
        if careful:
            points = [p for p in points if (p[3], p[2]) not in self._seen(p[0])]
        metrics = [Metric(key, float(value), int(ts), int(step)) for key, value, ts, step in points]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(
                self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH]
            )
        for key, _, ts, step in points:
            if key in self._history:
                self._history[key].add((step, ts))
        self.points_sent += len(points)

    def _send_artifact(self, op: dict, careful: bool) -> None:
        path, artifact_path = op["path"], op.get("artifact_path")
        if not os.path.exists(path):
            raise TrackingInputError(f"artifact {path} no longer exists; it cannot be uploaded")
        if os.path.isdir(path):
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def _send_terminate(self, op: dict, careful: bool) -> None:
        if op.get("reason"):
            self._send_tags({"tags": {contract.TAG_FAILURE_REASON: op["reason"]}}, careful)
        self.client.set_terminated(self.run_id, op["status"])
