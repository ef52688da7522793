"""The report's record of an MLflow run, and the one parser that makes it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import sys
from collections.abc import Iterable
from typing import Any

from trainer import contract, tracking

History = dict[str, list[tuple[int, float]]]

log = logging.getLogger(__name__)

# MLflow's SQL stores cannot hold infinities and keep +-inf as +-sys.float_info.max
# (SqlAlchemyStore._get_metric_value_details); the server answers with those too.
_FLOAT_MAX = sys.float_info.max


def metric_float(value: Any) -> float:
    """A metric value as logged: the stores' stand-in for an infinity read back as one.

    Args:
        value: A number, or JSON's "NaN" / "Infinity" / "-Infinity" strings.
    """
    number = float(value)
    if abs(number) == _FLOAT_MAX:
        return math.copysign(math.inf, number)
    return number


@dataclasses.dataclass
class RunRecord:
    """One MLflow run as the report sees it.

    Attributes:
        run_id: MLflow run id.
        name: Run name (falls back to the id's first 8 characters).
        status: FINISHED, FAILED, RUNNING, SCHEDULED or KILLED.
        start_time: Start time in ms since the epoch (0 when unknown).
        end_time: End time in ms since the epoch (None while running).
        params: All params.
        tags: User tags (``mlflow.*`` system tags removed).
        metrics: Latest value of every metric.
        metric_steps: Step of the latest value of every metric.
        history: Per-epoch history of each history metric, sorted by step; empty when none.
            Holds only the metrics fetched so far (see :meth:`ExperimentReader.fill_histories`).
        logged_history: History metrics this run logged (known from its latest metrics, before
            any history is fetched).
        lost: When a lost run (its process died without ending it) was last heard from, in
            ``tracking.stamp`` form; "" for a run that is not lost. From the ``lost`` tag of a
            run ended FAILED as lost, or set by :func:`mark_lost` on a silent RUNNING run.
        complete: Whether ``metrics`` holds every latest metric (False: the few a report over
            many runs reads of each, until ``ExperimentReader.complete`` reads the rest).
    """

    run_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    metric_steps: dict[str, int]
    history: History = dataclasses.field(default_factory=dict)
    logged_history: tuple[str, ...] = ()
    lost: str = ""
    complete: bool = True

    @property
    def feature_config(self) -> str:
        """Feature config display name (tag, else id param, else empty)."""
        return self.tags.get(contract.TAG_FEATURE_CONFIG_NAME) or self.params.get(
            contract.PARAM_FEATURE_CONFIG_ID, ""
        )

    @property
    def model_config(self) -> str:
        """Model config display name (tag, else id param, else empty)."""
        return self.tags.get(contract.TAG_MODEL_CONFIG_NAME) or self.params.get(
            contract.PARAM_MODEL_CONFIG_ID, ""
        )

    @property
    def pipeline_job(self) -> str:
        """The KFP pipeline job that trained the run ("" when not run by a pipeline)."""
        return self.tags.get(contract.TAG_PIPELINE_JOB, "")

    @property
    def failed(self) -> bool:
        """Whether the run ended FAILED or KILLED, or is lost (ended or not)."""
        return self.status in (contract.STATUS_FAILED, contract.STATUS_KILLED) or bool(self.lost)

    @property
    def failure_reason(self) -> str:
        """Why the run failed, as tagged ("" when nobody said); a lost run says it is lost."""
        reason = self.tags.get(contract.TAG_FAILURE_REASON, "")
        return reason or (tracking.lost_reason(self.lost) if self.lost else "")

    @property
    def shown_status(self) -> str:
        """The status as the report words it: "lost", else MLflow's status in lower case."""
        return "lost" if self.lost else self.status.lower()

    @property
    def degraded(self) -> str:
        """What the tracker said when tracking was degraded (points sent late or missing), or ""."""
        return self.tags.get(contract.TAG_TRACKING_DEGRADED, "")

    @property
    def has_history(self) -> bool:
        """Whether any per-epoch history was logged (fetched or not)."""
        return bool(self.logged_history) or any(self.history.values())

    @property
    def epochs(self) -> int | None:
        """Points in the longest history fetched so far (None when none was fetched)."""
        lengths = [len(pts) for pts in self.history.values() if pts]
        return max(lengths) if lengths else None

    @property
    def duration_s(self) -> float | None:
        """Wall time of the run in seconds, None while running or unknown."""
        if not self.end_time or not self.start_time:
            return None
        return max(0.0, (self.end_time - self.start_time) / 1000.0)


@dataclasses.dataclass
class ExperimentData:
    """What :meth:`ExperimentReader.read` and :func:`load_experiment` return.

    Attributes:
        experiment_id: MLflow experiment id ("" when the experiment does not exist).
        runs: All active runs, newest first.
        history_keys: History metric names found, in display order.
        history_source: How histories were fetched (for the report's footer; "" until some
            were).
        notes: Things the reader should know (missing experiment, fallbacks taken).
        partial: Whether the runs were read with a few metrics each (their ``complete`` says
            which were read in full since).
    """

    experiment_id: str
    runs: list[RunRecord]
    history_keys: list[str]
    history_source: str
    notes: list[str] = dataclasses.field(default_factory=list)
    partial: bool = False


def record_from_json(run: dict[str, Any]) -> RunRecord:
    """A RunRecord from one run in the REST API's ``runs/search`` shape (the one parser).

    Runs from a database store come through :func:`as_json` first, so both paths share the
    same rules (name fallback, system tags dropped, NaN/infinity read back as floats).
    """
    info, data = run.get("info", {}), run.get("data", {})
    return _record(
        info,
        {p["key"]: p.get("value", "") for p in data.get("params", [])},
        {t["key"]: t.get("value", "") for t in data.get("tags", [])},
        [(m["key"], m.get("value", "NaN"), m.get("step", 0)) for m in data.get("metrics", [])],
    )


def _record(
    info: dict[str, Any],
    params: dict[str, str],
    tags: dict[str, str],
    metrics: Iterable[tuple[str, Any, Any]],
) -> RunRecord:
    """The rules every parser shares: name fallback, system tags dropped, floats read back."""
    run_id = info.get("run_id") or info["run_uuid"]
    end_time = info.get("end_time")
    status = info.get("status", contract.STATUS_RUNNING)
    tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
    values: dict[str, float] = {}
    steps: dict[str, int] = {}
    for key, value, step in metrics:
        # JSON carries NaN and infinities as the strings "NaN" / "Infinity"; float() reads both.
        values[key], steps[key] = metric_float(value), int(step)
    return RunRecord(
        run_id=run_id,
        name=info.get("run_name") or run_id[:8],
        status=status,
        start_time=int(info.get("start_time") or 0),
        end_time=int(end_time) if end_time else None,
        params=params,
        tags=tags,
        metrics=values,
        metric_steps=steps,
        # A run taken over since it was ended as lost may still carry the tag for a moment.
        lost=tags.get(contract.TAG_LOST, "") if status == contract.STATUS_FAILED else "",
    )


def records_from_listing(page: dict[str, Any], skipped: list[str]) -> list[RunRecord]:
    """RunRecords of one page of the server's listing route (``reporting.listing.list_page``).

    Straight from the answer's compact shape (params and tags as objects, metrics as [name
    index, value, step]) under :func:`record_from_json`'s rules, without building the
    ``runs/search`` shape first (at 10,000 runs that detour cost ~1 s); a run that does not
    parse is left out and named in ``skipped``.
    """
    names = page["metric_keys"]
    records = []
    for run in page["runs"]:
        try:
            records.append(
                _record(
                    run["info"],
                    dict(run["params"]),
                    run["tags"],
                    ((names[i], value, step) for i, value, step in run["metrics"]),
                )
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            _skip(run, exc, skipped)
    return records


def _skip(run: Any, exc: Exception, skipped: list[str]) -> None:
    info = run.get("info", {}) if isinstance(run, dict) else {}
    info = info if isinstance(info, dict) else {}
    run_id = info.get("run_id") or info.get("run_uuid") or "?"
    log.warning("Leaving out run %s: %s: %s", run_id, type(exc).__name__, exc)
    skipped.append(f"{run_id} ({type(exc).__name__}: {exc})")


def records_from_json(runs: Iterable[dict[str, Any]], skipped: list[str]) -> list[RunRecord]:
    """RunRecords of every run that parses; each one that does not is named in ``skipped``.

    One malformed run (a metric value that is no number, a missing id) must not cost the
    report every other run.
    """
    records = []
    for run in runs:
        try:
            records.append(record_from_json(run))
        except (KeyError, TypeError, ValueError) as exc:
            _skip(run, exc, skipped)
    return records


def mark_lost(runs: Iterable[RunRecord], lost_after_s: float, now: dt.datetime) -> list[RunRecord]:
    """Marks each RUNNING run silent for over ``lost_after_s`` as lost; returns those runs."""
    marked = []
    for run in runs:
        heard = tracking.lost_since(run.status, run.tags, run.start_time, lost_after_s, now)
        if heard is not None:
            run.lost = tracking.stamp(heard)
            marked.append(run)
    return marked


def mark_ended(run: RunRecord, ended: tracking.LostRun) -> None:
    """Makes ``run`` what ``tracking.end_lost_runs`` made of it in MLflow: FAILED, tagged lost."""
    run.status, run.end_time, run.lost = contract.STATUS_FAILED, ended.end_time, ended.last_heard
    run.tags[contract.TAG_LOST] = ended.last_heard
    run.tags[contract.TAG_FAILURE_REASON] = ended.reason


def as_json(run: Any) -> dict[str, Any]:
    """An ``mlflow.entities.Run`` in the ``runs/search`` JSON shape (fields only, no rules)."""
    info, data = run.info, run.data
    return {
        "info": {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
        },
        "data": {
            "params": [{"key": k, "value": v} for k, v in data.params.items()],
            "tags": [{"key": k, "value": v} for k, v in data.tags.items()],
            # The latest value of each metric, with its step (data.metrics drops the step).
            "metrics": [
                {"key": m.key, "value": m.value, "step": m.step}
                for m in getattr(data, "_metric_objs", [])
            ],
        },
    }
