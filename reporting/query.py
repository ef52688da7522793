"""The one adapter between the report and MLflow: runs, params, tags, metrics and histories.

Everything the report knows about an experiment comes through an :class:`ExperimentReader`,
which makes as few round trips as the store allows:

* runs: four column queries (:mod:`reporting.listing`), in this process on a database store or
  in the tracking server over HTTP; ``runs/search`` pages of :data:`SEARCH_PAGE_SIZE` from a
  server without that route (params, tags and the latest value of every metric come with each
  run, so no per-run fetch is needed);
* per-epoch histories, only for the (run, metric) pairs a page draws, in bulk by store type
  (:mod:`reporting.histories`).

:func:`load_experiment` reads everything at once (every history of every run). A little over
400 lines on purpose: the report's whole conversation with MLflow stays in one adapter.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import time
from collections.abc import Iterable
from typing import Any

from mlflow.entities import RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from reporting import listing
from reporting.histories import HistoryFetcher, fetch_histories, host_creds, is_sql_store
from reporting.records import (
    ExperimentData,
    RunRecord,
    as_json,
    mark_ended,
    mark_lost,
    records_from_json,
    records_from_listing,
)
from trainer import contract, tracking
from trainer.tracking import TrackingUri

log = logging.getLogger(__name__)

# search_runs page size; the server caps it at 50,000 and the SQL store at 50,000 too.
SEARCH_PAGE_SIZE = 1000
# Listing pages asked at once after the first (mlflow_server/entrypoint.sh runs 2 workers).
LISTING_CONCURRENCY = 2
GET_EXPERIMENT_ENDPOINT = "/api/2.0/mlflow/experiments/get-by-name"
SEARCH_RUNS_ENDPOINT = "/api/2.0/mlflow/runs/search"
# A report must not hang for minutes on MLflow's default retry schedule when the server is down.
PROBE_TIMEOUT_S = 10
PROBE_MAX_RETRIES = 1

# Metric name prefixes that never carry a per-epoch history.
_SUMMARY_PREFIXES = ("final_", "best_", "test_", "baseline_")


class TrackingUnreachableError(RuntimeError):
    """MLflow could not be reached (connection refused, DNS, auth, unreadable store)."""


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a failed read from MLflow raises, over HTTP or from a database store."""
    import requests  # mlflow's own dependencies
    import sqlalchemy.exc

    return (
        MlflowException,
        OSError,
        requests.exceptions.RequestException,
        sqlalchemy.exc.SQLAlchemyError,
    )


def _mark_logged(runs: list[RunRecord]) -> list[str]:
    """The history keys of ``runs``; sets each run's ``logged_history`` from its metrics."""
    keys = history_keys_for(runs)
    for run in runs:
        run.logged_history = tuple(k for k in keys if k in run.metrics)
    return keys


def history_keys_for(runs: Iterable[RunRecord]) -> list[str]:
    """History metric names: the contract's, then any other metric logged at a step > 0."""
    known = contract.history_metrics()
    extra: set[str] = set()
    for run in runs:
        for key, step in run.metric_steps.items():
            if step > 0 and key not in known and not key.startswith(_SUMMARY_PREFIXES):
                extra.add(key)
    return known + sorted(extra)


def probe(client: MlflowClient, tracking_uri: str, experiment: str) -> str | None:
    """Check that MLflow answers and look up the experiment.

    Args:
        client: Client bound to ``tracking_uri``.
        tracking_uri: The tracking URI (decides how to probe).
        experiment: Experiment name.

    Returns:
        The experiment id, or None when the experiment does not exist.

    Raises:
        TrackingUnreachableError: MLflow did not answer or refused the request.
    """
    if TrackingUri(tracking_uri).is_server:
        import requests  # mlflow's own dependency
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(
                host_creds(client),
                GET_EXPERIMENT_ENDPOINT,
                "GET",
                max_retries=PROBE_MAX_RETRIES,
                backoff_factor=0.5,
                timeout=PROBE_TIMEOUT_S,
                raise_on_status=False,
                params={"experiment_name": experiment},
            )
        except (requests.exceptions.RequestException, MlflowException, OSError) as exc:
            raise TrackingUnreachableError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TrackingUnreachableError(
                f"HTTP {response.status_code} from {GET_EXPERIMENT_ENDPOINT}: {response.text[:300]}"
            )
        return response.json()["experiment"]["experiment_id"]
    import sqlalchemy.exc  # mlflow's own dependency

    try:
        exp = client.get_experiment_by_name(experiment)
    except (MlflowException, OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise TrackingUnreachableError(f"{type(exc).__name__}: {exc}") from exc
    return exp.experiment_id if exp is not None else None


def list_runs_http(
    client: MlflowClient, experiment_id: str, **fields: Any
) -> list[dict[str, Any]] | None:
    """Every active run from the server's listing route, in the ``runs/search`` shape.

    Args:
        client: Client bound to the server.
        experiment_id: The experiment.
        **fields: More of the listing request (``run_ids``, ``metric_keys``).

    Returns:
        The runs; None when the server has no listing route (a plain ``mlflow server``, an
        MLflow 2.x one, a file store behind it): the caller falls back to ``runs/search``.

    Raises:
        MlflowException: The route answered with an error other than "not here".
    """
    pages = listing_pages(client, experiment_id, **fields)
    if pages is None:
        return None
    return [run for page in pages for run in listing.decode(page)[0]]


def listing_pages(
    client: MlflowClient, experiment_id: str, **fields: Any
) -> list[dict[str, Any]] | None:
    """Every page of the server's listing route, as answered (``reporting.listing.list_page``).

    The first page is asked alone (most experiments fit in one); when there are more, the rest
    are asked :data:`LISTING_CONCURRENCY` at a time, at the offsets the route's page tokens
    name: each page's queries run in one server worker, so two in flight keep the deployed
    server's two workers busy (at 10,000 runs the wait for the server was ~7.5 s of ~20 s).
    At most ``LISTING_CONCURRENCY - 1`` requests past the last page, each answered empty.

    Returns:
        The pages in order; None when the server has no listing route.

    Raises:
        MlflowException: The route answered with an error, or with a page token that is not
            the next page's offset (a route this client does not know).
    """
    from concurrent.futures import ThreadPoolExecutor

    creds = host_creds(client)

    def ask(token: str | None) -> dict[str, Any] | None:
        return _listing_page(creds, {"experiment_id": experiment_id, **fields}, token)

    first = ask(None)
    if first is None:
        return None
    pages, token = [first], first.get("next_page_token")
    if not token:
        return pages
    _check_token(token, SEARCH_PAGE_SIZE)
    with ThreadPoolExecutor(LISTING_CONCURRENCY) as pool:
        pending: dict[int, Any] = {}
        offset = int(token)
        while True:
            while len(pending) < LISTING_CONCURRENCY:
                pending[offset] = pool.submit(ask, str(offset))
                offset += SEARCH_PAGE_SIZE
            asked = min(pending)
            page = pending.pop(asked).result()
            if page is None:
                raise MlflowException(f"{listing.LISTING_ENDPOINT} went away while paging")
            pages.append(page)
            token = page.get("next_page_token")
            if not token:
                for later in pending.values():  # past the end: answered empty, not kept
                    later.cancel()
                return pages
            _check_token(token, asked + SEARCH_PAGE_SIZE)


def _check_token(token: str, expected: int) -> None:
    """The listing's page token is the next page's offset; anything else is another route."""
    if token != str(expected):
        raise MlflowException(
            f"{listing.LISTING_ENDPOINT} answered page token {token!r}, expected the offset "
            f"{expected} ({listing.LISTING_FORMAT})"
        )


def _listing_page(creds: Any, body: dict[str, Any], token: str | None) -> dict[str, Any] | None:
    """One page of the listing route (``runs`` left encoded); None when there is no route."""
    from mlflow.utils.rest_utils import http_request

    body = {**body, "max_results": SEARCH_PAGE_SIZE}
    if token:
        body["page_token"] = token
    response = http_request(
        creds, listing.LISTING_ENDPOINT, "POST", json=body, raise_on_status=False
    )
    if response.status_code in (404, 405, 501):
        log.info("No run listing at %s (HTTP %d); paging through runs/search",
                 listing.LISTING_ENDPOINT, response.status_code)  # fmt: skip
        return None
    if response.status_code != 200:
        raise MlflowException(
            f"HTTP {response.status_code} from {listing.LISTING_ENDPOINT}: {response.text[:300]}"
        )
    try:
        page = response.json()
    except ValueError:  # requests' JSONDecodeError is one
        page = None
    shown = page.get("format") if isinstance(page, dict) else type(page).__name__
    if shown != listing.LISTING_FORMAT:  # another server's route of the same name
        log.info("%s answered something else (format %r); paging through runs/search",
                 listing.LISTING_ENDPOINT, shown)  # fmt: skip
        return None
    return page


def search_all_runs(
    client: MlflowClient,
    tracking_uri: str,
    experiment_id: str,
    skipped: list[str] | None = None,
    *,
    metric_keys: list[str] | None = None,
    run_ids: list[str] | None = None,
) -> tuple[list[RunRecord], bool]:
    """All active runs of an experiment, following ``page_token`` until the last page.

    A run that does not parse is left out and named in ``skipped``.

    A database store is read with four column queries (:func:`reporting.listing.list_page`).
    Over HTTP the server's listing route (:func:`list_runs_http`: the same queries in the
    server, as ``mlflow_server/entrypoint.sh`` runs it) is asked first; a server without it is
    paged through ``runs/search``, whose JSON goes straight into :class:`RunRecord` (the
    client's protobuf round trip would cost more than the transfer, ~1 s per 1,000 runs).

    Args:
        client: Client bound to ``tracking_uri``.
        tracking_uri: The tracking URI.
        experiment_id: The experiment.
        skipped: Collects the runs left out, each with why.
        metric_keys: Only these latest metrics (``name*``: a prefix), where the store can
            filter (the listing); None: every metric.
        run_ids: Only these runs, where the store can filter; None: every run.

    Returns:
        (the runs, whether ``metric_keys`` / ``run_ids`` were applied: False when the store
        answered with every metric of every run).
    """
    skipped = [] if skipped is None else skipped
    fields = {
        k: v for k, v in (("metric_keys", metric_keys), ("run_ids", run_ids)) if v is not None
    }
    store = None if TrackingUri(tracking_uri).is_server else client._tracking_client.store
    if is_sql_store(store):
        return records_from_listing(
            listing.list_page(store, experiment_id, **fields), skipped
        ), True
    if TrackingUri(tracking_uri).is_server:
        pages = listing_pages(client, experiment_id, **fields)
        if pages is not None:
            return [r for page in pages for r in records_from_listing(page, skipped)], True
        return _search_http(client, experiment_id, skipped), False
    return search_runs_paged(client, experiment_id, skipped), False


def _search_http(client: MlflowClient, experiment_id: str, skipped: list[str]) -> list[RunRecord]:
    """Every active run through ``runs/search`` over HTTP, page by page, read as JSON."""
    from mlflow.utils.rest_utils import http_request_safe

    records: list[RunRecord] = []
    token: str | None = None
    creds = host_creds(client)
    while True:
        body: dict[str, Any] = {
            "experiment_ids": [experiment_id],
            "run_view_type": "ACTIVE_ONLY",
            "max_results": SEARCH_PAGE_SIZE,
        }
        if token:
            body["page_token"] = token
        page = http_request_safe(creds, SEARCH_RUNS_ENDPOINT, "POST", json=body).json()
        records.extend(records_from_json(page.get("runs", []), skipped))
        token = page.get("next_page_token")
        if not token:
            return records


def search_runs_paged(
    client: MlflowClient, experiment_id: str, skipped: list[str]
) -> list[RunRecord]:
    """All active runs through the client's ``search_runs``, page by page (any store)."""
    records: list[RunRecord] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE_SIZE,
            page_token=token,
        )
        records.extend(records_from_json((as_json(r) for r in page), skipped))
        token = page.token
        if not token:
            return records


class ExperimentReader:
    """Reads one MLflow experiment: all runs first, then histories for the runs that need them.

    A report draws every run's loss and ranking-metric curves but the full set of history
    metrics only for a dozen runs; fetching histories per (runs, metrics) request keeps the
    number of history requests to what the pages show.

    Args:
        tracking_uri: MLflow tracking URI (``http(s)://``, ``sqlite:///``, ``postgresql://``...).
        history_fetcher: Replaces :func:`fetch_histories` (the benchmark's per-run baseline).
    """

    def __init__(self, tracking_uri: str, history_fetcher: HistoryFetcher | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = tracking.open_client(tracking_uri)
        self._fetcher = history_fetcher or fetch_histories
        self._fetched: set[tuple[str, str]] = set()
        self.fetch_s = 0.0

    def artifact(self, run_id: str, path: str, folder: str) -> str | None:
        """A run's artifact file downloaded into ``folder``; None when the run has none there."""
        parent = posixpath.dirname(path)
        if path not in {a.path for a in self.client.list_artifacts(run_id, parent or None)}:
            return None
        return self.client.download_artifacts(run_id, path, folder)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Sets tags on a run in one request."""
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def read(
        self,
        experiment: str,
        *,
        end_lost: bool = False,
        lost_after_s: float = contract.LOST_AFTER_S,
        metric_keys: list[str] | None = None,
    ) -> ExperimentData:
        """Every active run of ``experiment``, newest first, without histories.

        With ``metric_keys`` the runs carry only those latest metrics where the store can
        filter them (``ExperimentData.partial``); :meth:`complete` then reads every metric of
        the runs shown in detail. A report over 10,000 runs reads ~30 metrics a run this way
        instead of the ~270 an evaluation logs.

        RUNNING runs silent for over ``lost_after_s`` (no heartbeat, see
        ``tracking.lost_since``) come back marked lost; with ``end_lost`` they are also ended
        FAILED in MLflow (``tracking.end_lost_runs``) and come back as ended. Nothing is asked
        of MLflow beyond the read unless some run is lost.

        Raises:
            TrackingUnreachableError: MLflow did not answer.
        """
        started = time.perf_counter()
        experiment_id = probe(self.client, self.tracking_uri, experiment)
        if experiment_id is None:
            return ExperimentData(
                "", [], [], "", notes=[f"Experiment {experiment!r} does not exist (yet)."]
            )
        try:
            skipped: list[str] = []
            runs, filtered = search_all_runs(
                self.client, self.tracking_uri, experiment_id, skipped, metric_keys=metric_keys
            )
        except _read_errors() as exc:
            raise TrackingUnreachableError(f"searching runs: {type(exc).__name__}: {exc}") from exc
        keys = _mark_logged(runs)
        self.fetch_s += time.perf_counter() - started
        log.info(
            "Read %d runs of %r in %.2fs", len(runs), experiment, time.perf_counter() - started
        )
        notes = self._lost(experiment_id, runs, end_lost, lost_after_s)
        if skipped:
            shown = "; ".join(skipped[:5]) + (
                f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            )
            notes.append(f"{len(skipped)} runs could not be read and are left out: {shown}")
        data = ExperimentData(experiment_id, runs, keys, "", notes=notes)
        data.partial = filtered and metric_keys is not None
        for run in runs if data.partial else ():
            run.complete = False
        return data

    def complete(self, data: ExperimentData, runs: Iterable[RunRecord]) -> None:
        """Every latest metric of ``runs`` when ``data`` was read with a few (one request).

        The history keys are found again over all runs: a history metric outside the few
        (``lr``, say) is known from the completed runs.

        Raises:
            TrackingUnreachableError: MLflow stopped answering (the runs keep what they had).
        """
        todo = {r.run_id: r for r in runs if not r.complete} if data.partial else {}
        if not todo:
            return
        started = time.perf_counter()
        try:
            every = len(todo) == len(data.runs)
            full, _ = search_all_runs(
                self.client, self.tracking_uri, data.experiment_id,
                run_ids=None if every else list(todo),
            )  # fmt: skip
        except _read_errors() as exc:
            raise TrackingUnreachableError(
                f"reading the runs shown in detail: {type(exc).__name__}: {exc}"
            ) from exc
        for record in full:
            if (run := todo.get(record.run_id)) is not None:
                run.metrics, run.metric_steps = record.metrics, record.metric_steps
                run.complete = True
        data.history_keys = _mark_logged(data.runs)
        self.fetch_s += time.perf_counter() - started
        log.info("Read every metric of %d runs in %.2fs", len(full), time.perf_counter() - started)

    def _lost(
        self, experiment_id: str, runs: list[RunRecord], end: bool, lost_after_s: float
    ) -> list[str]:
        """Marks the lost runs, ends them if asked; returns what the report says of them."""
        now = dt.datetime.now(dt.UTC)
        lost = {r.run_id: r for r in mark_lost(runs, lost_after_s, now)}
        if not lost:
            return []
        ended = 0
        if end:
            for run in tracking.end_lost_runs(self.client, [experiment_id], lost_after_s, now):
                if run.run_id in lost:
                    mark_ended(lost[run.run_id], run)
                    ended += 1
        limit = f"{lost_after_s / 60:g} min"
        notes = []
        if ended:
            notes.append(
                f"{ended} runs had sent no sign of life for over {limit} (their process died "
                "without ending them): ended FAILED now, tagged lost."
            )
        if len(lost) > ended:
            why = (
                "this report only reads"
                if not end
                else "not ended by this report (ended by another, or MLflow did not answer: "
                "see its log)"
            )
            notes.append(
                f"{len(lost) - ended} RUNNING runs have sent no sign of life for over {limit} "
                f"and are shown as lost; {why}."
            )
        return notes

    def fill_histories(
        self, data: ExperimentData, runs: Iterable[RunRecord], keys: Iterable[str]
    ) -> None:
        """Fetch the histories of ``keys`` for ``runs`` that were not fetched before.

        Raises:
            TrackingUnreachableError: MLflow stopped answering (what was fetched before stays).
        """
        started = time.perf_counter()
        wanted_keys = [k for k in dict.fromkeys(keys) if k in data.history_keys]
        # (run, metric) pairs this run logged and nobody fetched yet.
        pairs = [
            (run, k)
            for run in runs
            for k in wanted_keys
            if k in run.logged_history and (run.run_id, k) not in self._fetched
        ]
        todo = {run.run_id: run for run, _ in pairs}
        pending = {k for _, k in pairs}
        todo_keys = [k for k in wanted_keys if k in pending]
        if not todo:
            return
        try:
            histories, source = self._fetcher(
                self.client, self.tracking_uri, list(todo.values()), todo_keys
            )
        except _read_errors() as exc:
            raise TrackingUnreachableError(
                f"fetching metric histories: {type(exc).__name__}: {exc}"
            ) from exc
        for run_id, run in todo.items():
            fetched = histories.get(run_id, {})
            for key in {*todo_keys, *fetched}:
                if (run_id, key) in self._fetched:
                    continue
                self._fetched.add((run_id, key))
                if fetched.get(key):
                    run.history[key] = fetched[key]
        data.history_source = source
        elapsed = time.perf_counter() - started
        self.fetch_s += elapsed
        log.info(
            "Fetched %d history metrics of %d runs (%s) in %.2fs",
            len(todo_keys),
            len(todo),
            source,
            elapsed,
        )


def load_experiment(
    tracking_uri: str,
    experiment: str,
    history_fetcher: HistoryFetcher | None = None,
) -> ExperimentData:
    """Read every active run of an experiment with all its per-epoch histories.

    Args:
        tracking_uri: MLflow tracking URI (``http(s)://``, ``sqlite:///``, ``postgresql://``...).
        experiment: Experiment name.
        history_fetcher: Replaces :func:`fetch_histories` (the benchmark's per-run baseline).

    Returns:
        The runs, newest first, with ``history`` filled in.

    Raises:
        TrackingUnreachableError: MLflow did not answer.
    """
    reader = ExperimentReader(tracking_uri, history_fetcher)
    data = reader.read(experiment)
    reader.fill_histories(data, data.runs, data.history_keys)
    return data
