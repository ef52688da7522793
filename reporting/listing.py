"""Every active run of an experiment in column queries: the report's listing, client or server.

MLflow's ``search_runs`` builds one SQLAlchemy ORM object per latest metric, param and tag. A
run of this product carries ~270 latest metrics since issue 23 (intervals, lifts, slices,
beyond-accuracy figures), so for 1,000 runs that is ~300,000 objects: ~15 s in the store, on
either side of the wire (``bench/RESULTS.md``). Here the same records come from four column
queries (runs, latest metrics, params, tags) and no ORM objects, in two places:

* in the report's process, when the tracking URI is the database itself (``sqlite:///``,
  ``postgresql://``): :func:`list_page`;
* in the tracking server (``mlflow_server/python/report_listing.py`` serves
  :data:`LISTING_ENDPOINT`), when the report reads over HTTP.

Both build a page in :data:`LISTING_FORMAT` (:func:`list_page`), without MLflow's ``mlflow.*``
system tags (the report drops them), which ``reporting.records.records_from_listing`` reads
under the same rules as ``runs/search``'s JSON; :func:`decode` gives the ``runs/search``
shape. This module imports only the standard library and mlflow: the server image copies it
(with the package's empty ``__init__``) without the rest of the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# The server's route (under MLflow's static prefix, if any); POST, JSON body, JSON answer.
LISTING_ENDPOINT = "/api/2.0/b2b-report/runs/list"
LISTING_FORMAT = "run-listing/1"
# Runs per answer: one page of 1,000 runs x ~270 metrics is ~7 MB of JSON before gzip, well
# inside Cloud Run's 32 MiB response limit (https://cloud.google.com/run/quotas).
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000


class ListingRequestError(ValueError):
    """A listing request the server cannot answer (its message names the field)."""


def parse_request(body: Any) -> dict[str, Any]:
    """The listing request's fields, checked.

    Args:
        body: The decoded JSON body: ``experiment_id`` (required), ``max_results``
            (1..:data:`MAX_PAGE_SIZE`), ``page_token`` (from the previous answer), ``run_ids``
            (only these runs), ``metric_keys`` (only these latest metrics; names ending in
            ``*`` are prefixes).

    Raises:
        ListingRequestError: A field is missing or of the wrong type.
    """
    if not isinstance(body, dict):
        raise ListingRequestError("the body must be a JSON object")
    experiment_id = body.get("experiment_id")
    if not isinstance(experiment_id, str) or not experiment_id.isdigit():
        raise ListingRequestError(f"experiment_id must be an experiment id, got {experiment_id!r}")
    size = body.get("max_results", DEFAULT_PAGE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PAGE_SIZE:
        raise ListingRequestError(
            f"max_results must be an integer in 1..{MAX_PAGE_SIZE}, got {size!r}"
        )
    token = body.get("page_token") or "0"
    if not isinstance(token, str) or not token.isdigit():
        raise ListingRequestError(f"page_token must come from a previous answer, got {token!r}")
    out: dict[str, Any] = {
        "experiment_id": experiment_id,
        "max_results": size,
        "offset": int(token),
    }
    for field in ("run_ids", "metric_keys"):
        value = body.get(field)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ListingRequestError(f"{field} must be a list of strings, got {value!r}")
        out[field] = value
    return out


def _metric_filter(column: Any, keys: Iterable[str]) -> Any:
    """A SQL condition: the metric key is one of ``keys`` (``name*`` for a prefix)."""
    from sqlalchemy import or_

    exact = [k for k in keys if not k.endswith("*")]
    prefixes = [k[:-1] for k in keys if k.endswith("*")]
    conditions = [column.in_(exact)] if exact else []
    conditions += [column.startswith(p, autoescape=True) for p in prefixes]
    return or_(*conditions) if conditions else column.is_(None)


def list_runs(
    store: Any,
    experiment_id: str,
    *,
    max_results: int | None = None,
    offset: int = 0,
    run_ids: list[str] | None = None,
    metric_keys: list[str] | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Active runs of an experiment from a ``SqlAlchemyStore``, in the ``runs/search`` shape.

    :func:`list_page` decoded; the arguments are its.

    Returns:
        The runs, and the offset of the next page (None after the last).
    """
    page = list_page(
        store, experiment_id, max_results=max_results, offset=offset, run_ids=run_ids,
        metric_keys=metric_keys,
    )  # fmt: skip
    runs, token = decode(page)
    return runs, None if token is None else int(token)


def list_page(
    store: Any,
    experiment_id: str,
    *,
    max_results: int | None = None,
    offset: int = 0,
    run_ids: list[str] | None = None,
    metric_keys: list[str] | None = None,
) -> dict[str, Any]:
    """A page of an experiment's active runs from a ``SqlAlchemyStore``, in :data:`LISTING_FORMAT`.

    What the server answers (and what the report reads in process from a database store):
    params and tags as objects, metric names once and each metric as [name index, value,
    step], built straight from the rows (at 10,000 runs an intermediate ``runs/search`` shape
    was ~1 s of the server's ~5 s). The order is ``search_runs``'s (newest first, then by id);
    a page is ``max_results`` runs from ``offset`` in that order.

    Args:
        store: MLflow's ``SqlAlchemyStore`` (the client's, or the server's own).
        experiment_id: The experiment.
        max_results: Runs per page; None: all of them.
        offset: Runs to skip.
        run_ids: Only these runs (all when None).
        metric_keys: Only these latest metrics (``name*``: a prefix); all when None.
    """
    from mlflow.entities import LifecycleStage
    from mlflow.store.tracking.dbmodels.models import SqlRun

    active = [
        SqlRun.experiment_id == int(experiment_id),
        SqlRun.lifecycle_stage == LifecycleStage.ACTIVE,
    ]
    if run_ids is not None:
        active.append(SqlRun.run_uuid.in_(run_ids))
    with store.ManagedSessionMaker() as session:
        runs, next_offset = _run_infos(session, active, max_results, offset)
        ids = list(runs)

        def rows(model: Any, *columns: Any, where: Any = None) -> Any:
            """``columns`` of ``model`` for the runs listed (a join for all, else their ids)."""
            from sqlalchemy import select

            statement = select(*columns)
            if max_results is None and run_ids is None:
                statement = statement.join(SqlRun, SqlRun.run_uuid == model.run_uuid)
                statement = statement.where(*active)
            else:
                statement = statement.where(model.run_uuid.in_(ids))
            if where is not None:
                statement = statement.where(where)
            return session.execute(statement)

        keys = _fill(rows, runs, metric_keys)
    return {
        "format": LISTING_FORMAT,
        "metric_keys": keys,
        "runs": list(runs.values()),
        "next_page_token": str(next_offset) if next_offset is not None else None,
    }


def _run_infos(
    session: Any, active: list[Any], max_results: int | None, offset: int
) -> tuple[dict[str, dict[str, Any]], int | None]:
    """The page's runs (info filled, data empty) by id, and the next page's offset."""
    from mlflow.store.tracking.dbmodels.models import SqlRun

    query = (
        session.query(
            SqlRun.run_uuid, SqlRun.name, SqlRun.status, SqlRun.start_time, SqlRun.end_time
        )
        .filter(*active)
        # search_runs's order; a run without a start time last, on SQLite and PostgreSQL alike
        .order_by(SqlRun.start_time.desc().nulls_last(), SqlRun.run_uuid)
    )
    if max_results is not None:
        query = query.offset(offset).limit(max_results + 1)
    found = query.all()
    next_offset = None
    if max_results is not None and len(found) > max_results:
        found, next_offset = found[:max_results], offset + max_results
    runs: dict[str, dict[str, Any]] = {}
    for run_id, name, status, start, end in found:
        info = {"run_id": run_id, "run_name": name, "status": status}
        info |= {"start_time": start, "end_time": end}
        runs[run_id] = {"info": info, "params": {}, "tags": {}, "metrics": []}
    return runs, next_offset


def _fill(rows: Any, runs: dict[str, dict[str, Any]], metric_keys: list[str] | None) -> list[str]:
    """Latest metrics, params and tags of ``runs``, one column query each; the metric names."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlTag

    m = SqlLatestMetric
    chosen = None if metric_keys is None else _metric_filter(m.key, metric_keys)
    index: dict[str, int] = {}
    for run_id, key, value, step, is_nan in rows(
        m, m.run_uuid, m.key, m.value, m.step, m.is_nan, where=chosen
    ):
        i = index.get(key)
        if i is None:
            i = index[key] = len(index)
        # the SQL store keeps NaN as 0, flagged
        runs[run_id]["metrics"].append([i, math.nan if is_nan else value, step])
    for run_id, key, value in rows(SqlParam, SqlParam.run_uuid, SqlParam.key, SqlParam.value):
        runs[run_id]["params"][key] = value
    # MLflow's system tags (mlflow.*: source, user, run name, logged models) are the report's
    # to drop (reporting.records); a real run carries ~10 of them, some kilobytes long.
    system = SqlTag.key.startswith("mlflow.", autoescape=True)
    for run_id, key, value in rows(
        SqlTag, SqlTag.run_uuid, SqlTag.key, SqlTag.value, where=~system
    ):
        runs[run_id]["tags"][key] = value
    return list(index)


def decode(page: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A page from the server back in the ``runs/search`` shape, and the next page's token.

    Raises:
        ValueError: The answer is not in :data:`LISTING_FORMAT` (another server's route).
    """
    shown = page.get("format") if isinstance(page, dict) else type(page).__name__
    if shown != LISTING_FORMAT:
        raise ValueError(f"not a {LISTING_FORMAT} answer: format {shown!r}")
    keys = page["metric_keys"]
    runs = []
    for run in page["runs"]:
        metrics = [{"key": keys[i], "value": v, "step": s} for i, v, s in run["metrics"]]
        params = [{"key": k, "value": v} for k, v in run["params"].items()]
        tags = [{"key": k, "value": v} for k, v in run["tags"].items()]
        runs.append(
            {"info": run["info"], "data": {"params": params, "tags": tags, "metrics": metrics}}
        )
    return runs, page.get("next_page_token")
