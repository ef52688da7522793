"""The report's view model: the experiment read once, the rank metric and the runs interpreted once.

:func:`read_model` reads the runs (and only the histories the pages draw) and builds a
:class:`ReportModel`; the page builders, the Markdown summary and the KFP metrics all read
from it and never look at a metric's name again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from reporting import aggregate, notes, protocol, ties
from reporting import cost as run_cost
from reporting.histories import HistoryFetcher
from reporting.metric import RankMetric
from reporting.query import ExperimentReader, TrackingUnreachableError
from reporting.records import ExperimentData, RunRecord
from trainer import contract
from trainer.tracking import TrackingUri

log = logging.getLogger(__name__)

# The dashboard's headline: test recall at the largest k, shown beside the rank metric (which
# chooses the best run) and never used to choose.
HEADLINE_METRIC = contract.test_recall_key(max(contract.RECALL_KS))


def safe_ui_url(ui_url: str) -> str:
    """The MLflow UI base URL without a trailing slash, percent-encoded; "" unless http(s).

    Spaces, quotes, angle brackets, parentheses and other characters that could end a link
    target (in HTML or Markdown) or start markup are percent-encoded.
    """
    ui_url = (ui_url or "").strip().rstrip("/")
    if ui_url and urllib.parse.urlsplit(ui_url).scheme not in ("http", "https"):
        log.warning("Ignoring MLflow UI URL %r: only http(s) links are written", ui_url)
        return ""
    return urllib.parse.quote(ui_url, safe=":/?#@!$&*+,;=-._~%")


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """Link to a run in the MLflow UI ("" when no UI base URL is known)."""
    if not ui_url or not experiment_id:
        return ""
    q = urllib.parse.quote
    return f"{ui_url}/#/experiments/{q(experiment_id, safe='')}/runs/{q(run_id, safe='')}"


@dataclasses.dataclass
class ReportModel:
    """Everything the pages, the summary and the metrics show.

    Attributes:
        experiment: Experiment name.
        data: The runs as read (with the histories fetched) and the reader's notes.
        rank: The ranking metric, interpreted.
        stats: The dashboard's counts, the best run (the leaderboard's first) and the headline
            metric's value there and mean.
        rows: Leaderboard rows of the compared runs: ranked runs best first, then unranked ones.
        compare_runs: The runs the comparison shows, in order.
        chosen_by_id: Whether the compared runs were named (else: the top N).
        detail_runs: How many runs get their own chart and epoch table.
        ui_url: MLflow UI base URL ("" when unknown or unsafe).
        highlight_run_id: The run marked as "this run".
        highlight_pipeline_job: The pipeline job whose runs are marked as "this job's" ("" for
            none).
        tracking_uri: The tracking URI, redacted.
        generated: When the report was made (UTC, minutes).
        reference: The protocol runs are compared under (None: no run logged a key).
        compared: The runs compared (ranked, in the heatmap and the recall view).
        apart: Finished runs of another protocol (or none), with the part that differs.
        listed: The rows listed one by one (``aggregate.listed_rows``: the best
            ``contract.REPORT_LISTED_RUNS``, the marked ones); all rows when fewer.
        unlisted: The other rows, aggregated per (feature config, model config) pair.
        apart_listed: The runs apart listed one by one (the first ``REPORT_LISTED_RUNS``).
    """

    experiment: str
    data: ExperimentData
    rank: RankMetric
    stats: aggregate.DashboardStats
    rows: list[aggregate.LeaderRow]
    compare_runs: list[RunRecord]
    chosen_by_id: bool
    detail_runs: int
    ui_url: str
    highlight_run_id: str
    tracking_uri: str
    generated: str
    highlight_pipeline_job: str = ""
    reference: protocol.Reference | None = None
    compared: list[RunRecord] = dataclasses.field(default_factory=list)
    apart: list[protocol.Apart] = dataclasses.field(default_factory=list)
    listed: list[aggregate.LeaderRow] = dataclasses.field(default_factory=list)
    unlisted: list[aggregate.PairSummary] = dataclasses.field(default_factory=list)
    apart_listed: list[protocol.Apart] = dataclasses.field(default_factory=list)

    @property
    def unlisted_runs(self) -> int:
        """How many compared runs no table lists one by one."""
        return sum(p.runs for p in self.unlisted)

    @functools.cached_property
    def baselines(self) -> tuple[str, ...]:
        """The baselines shown: those some run logged (the heuristics when none did).

        Strong baselines are logged by the domain they fit (TIFU-KNN where buyers re-buy,
        EASE or item-kNN where they do not), so a column only appears where it has values.
        Worked out once (the pages ask for it often; at 10,000 runs one pass took ~0.1 s).
        """
        wanted = {
            contract.baseline_recall_key(b, k): b
            for b in contract.BASELINES
            for k in contract.RECALL_KS
        }
        found: set[str] = set()
        for run in self.compared or self.data.runs:
            found.update(wanted[key] for key in wanted.keys() & run.metrics.keys())
            if len(found) == len(contract.BASELINES):
                break
        logged = tuple(b for b in contract.BASELINES if b in found)
        return logged or contract.HEURISTIC_BASELINES

    @property
    def ranked(self) -> list[aggregate.LeaderRow]:
        """The rows that have a rank, best first."""
        return [r for r in self.rows if r.rank is not None]

    def this_run(self, run: RunRecord) -> bool:
        """Whether ``run`` is the run marked as "this run"."""
        return bool(self.highlight_run_id) and run.run_id == self.highlight_run_id

    def this_job(self, run: RunRecord) -> bool:
        """Whether ``run`` was trained by the highlighted pipeline job."""
        return bool(self.highlight_pipeline_job) and run.pipeline_job == self.highlight_pipeline_job

    def marked(self, run: RunRecord) -> bool:
        """Whether ``run`` is highlighted in the tables (this run, or this job's)."""
        return self.this_run(run) or self.this_job(run)

    def url(self, run: RunRecord) -> str:
        """The run's page in the MLflow UI ("" without a UI URL)."""
        return run_url(self.ui_url, self.data.experiment_id, run.run_id)

    @functools.cached_property
    def costs(self) -> dict[str, run_cost.RunCost]:
        """Each run's estimated cost by run id, shared steps divided (runs without: absent)."""
        return run_cost.run_costs(self.data.runs)


def overview_keys(rank: RankMetric) -> list[str]:
    """History metrics drawn for every run: losses and the ranking metric's per-epoch twin."""
    keys = [contract.METRIC_LOSS, contract.METRIC_VAL_LOSS, rank.epoch_metric]
    return list(dict.fromkeys(keys))


def summary_metric_keys(rank: RankMetric) -> list[str]:
    """The latest metrics every run is read with: what the views show of every run.

    The rank value, its interval and epoch values; test recall and each baseline's at every
    k (leaderboard, heatmap, lifts, means); the history metrics' last values (which runs
    logged a history, the training-curves table). The runs shown in detail are read again in
    full (``ExperimentReader.complete``).
    """
    keys = [
        rank.name,
        *(k for k in rank.interval if k),
        contract.best_key(rank.epoch_metric),
        contract.final_key(rank.epoch_metric),
        contract.BEST_EPOCH,
        HEADLINE_METRIC,
        *overview_keys(rank),
        *contract.history_metrics(),  # the training-curves page's final values
        *run_cost.metric_keys(),  # the leaderboard's cost, the cost chart, the dashboard
    ]
    for k in contract.RECALL_KS:
        keys.append(contract.test_recall_key(k))
        keys += [contract.baseline_recall_key(b, k) for b in contract.BASELINES]
    return list(dict.fromkeys(keys))


def _fill_histories(
    reader: ExperimentReader, data: ExperimentData, runs: list[RunRecord], keys: list[str]
) -> str | None:
    """Fetch histories; on an MLflow failure return what went wrong instead of raising."""
    try:
        reader.fill_histories(data, runs, keys)
    except TrackingUnreachableError as exc:
        log.error("Reading metric histories failed: %s", exc)
        return str(exc)
    return None


def _ranked(
    runs: list[RunRecord], rank: RankMetric, highlight_pipeline_job: str, highlight_run_id: str
) -> tuple[
    protocol.Reference | None, list[RunRecord], list[protocol.Apart], list[aggregate.LeaderRow]
]:
    """(reference protocol, runs compared, runs apart, leaderboard rows with intervals and ties)."""
    ref = protocol.reference(runs, highlight_pipeline_job, highlight_run_id)
    compared, apart = protocol.split_comparable(runs, ref)
    rows = aggregate.leaderboard(compared, rank)
    ties.mark_ties(rows, rank)
    return ref, compared, apart, rows


def _marker(highlight_run_id: str, highlight_pipeline_job: str) -> Callable[[RunRecord], bool]:
    """Whether a run is marked: this run, or one of this pipeline job's."""

    def marked(run: RunRecord) -> bool:
        return (bool(highlight_run_id) and run.run_id == highlight_run_id) or (
            bool(highlight_pipeline_job) and run.pipeline_job == highlight_pipeline_job
        )

    return marked


def _complete(reader: ExperimentReader, data: ExperimentData, runs: list[RunRecord]) -> str | None:
    """Read every metric of ``runs``; on an MLflow failure return what went wrong."""
    try:
        reader.complete(data, runs)
    except TrackingUnreachableError as exc:
        log.error("Reading the runs shown in detail failed: %s", exc)
        return str(exc)
    return None


def _read_shown(
    reader: ExperimentReader,
    data: ExperimentData,
    rank: RankMetric,
    rows: list[aggregate.LeaderRow],
    apart: list[protocol.Apart],
    marked: Callable[[RunRecord], bool],
    compare_run_ids: list[str] | None,
    top_n: int,
    detail_runs: int,
    highlight_run_id: str,
) -> tuple[list[RunRecord], list[str], int, str | None]:
    """Reads what the pages show beyond the few metrics of every run.

    Beyond ``contract.REPORT_LISTED_RUNS`` runs only those shown in detail (the
    ``detail_runs`` best with a history, the compared ones, the leader, this run) are read in
    full, so a custom per-epoch metric is known from those; every history metric of those
    runs, and the overview curves of the listed ones (the best and the marked).

    Returns:
        (the compared runs, the compared ids not found, how many runs get a detail chart,
        what failed midway or None).
    """
    listed, _ = aggregate.listed_rows(rows, marked, contract.REPORT_LISTED_RUNS)
    by_id = {r.run_id: r for r in data.runs}
    compare_runs, missing = aggregate.choose_compare_runs(rows, by_id, compare_run_ids, top_n)
    with_history = [r.run for r in listed if r.run.has_history]
    detail_runs = detail_runs or len(with_history)
    detail = with_history[:detail_runs]
    leader = [r.run for r in rows[:1] if r.rank is not None]
    this_run = [r for r in data.runs if r.run_id == highlight_run_id]
    # A few hundred runs are read in full (every custom metric known, as before); beyond,
    # only the runs shown in detail.
    small = len(data.runs) <= contract.REPORT_LISTED_RUNS
    error = _complete(
        reader, data, data.runs if small else [*detail, *compare_runs, *leader, *this_run]
    )
    drawn = [r.run for r in listed] + [a.run for a in apart[: contract.REPORT_LISTED_RUNS]]
    if error is None:
        error = _fill_histories(reader, data, drawn, overview_keys(rank))
    if error is None:
        error = _fill_histories(reader, data, [*detail, *compare_runs], data.history_keys)
    return compare_runs, missing, detail_runs, error


def _ranking(
    runs: list[RunRecord],
    rank: RankMetric,
    marked: Callable[[RunRecord], bool],
    highlight_pipeline_job: str,
    highlight_run_id: str,
) -> dict[str, Any]:
    """The model's ranking fields: reference, compared, apart, rows, listed and the rest."""
    ref, compared, apart, rows = _ranked(runs, rank, highlight_pipeline_job, highlight_run_id)
    listed, unlisted = aggregate.listed_rows(rows, marked, contract.REPORT_LISTED_RUNS)
    return {
        "reference": ref,
        "compared": compared,
        "apart": apart,
        "rows": rows,
        "listed": listed,
        "unlisted": aggregate.pair_summaries(unlisted, rank),
        "apart_listed": apart[: contract.REPORT_LISTED_RUNS],
    }


def read_model(
    tracking_uri: str,
    experiment: str,
    rank_metric: str,
    *,
    compare_run_ids: list[str] | None,
    top_n: int,
    detail_runs: int,
    ui_url: str = "",
    highlight_run_id: str = "",
    highlight_pipeline_job: str = "",
    history_fetcher: HistoryFetcher | None = None,
    end_lost: bool = False,
    lost_after_s: float = contract.LOST_AFTER_S,
) -> tuple[ReportModel, float]:
    """Read the experiment and build the view model.

    Every run is read with :func:`summary_metric_keys`, the runs in detail in full and with
    their histories, the listed ones with their overview curves (:func:`_read_shown`). What
    fails midway becomes a note. Lost runs are shown as lost and, with ``end_lost``, ended.

    Returns:
        (the model, seconds spent reading from MLflow).

    Raises:
        TrackingUnreachableError: MLflow did not answer when the runs were read.
    """
    rank = RankMetric.of(rank_metric)
    reader = ExperimentReader(tracking_uri, history_fetcher)
    data = reader.read(
        experiment, end_lost=end_lost, lost_after_s=lost_after_s,
        metric_keys=summary_metric_keys(rank),
    )  # fmt: skip
    marked = _marker(highlight_run_id, highlight_pipeline_job)
    _, _, apart, rows = _ranked(data.runs, rank, highlight_pipeline_job, highlight_run_id)
    shown = _read_shown(
        reader, data, rank, rows, apart, marked, compare_run_ids, top_n, detail_runs,
        highlight_run_id,
    )  # fmt: skip
    compare_runs, missing, detail_runs, error = shown
    # Ranked again: an older run without best_/final_ metrics takes its epoch values from the
    # history fetched since (the order, from the latest metrics, is the same).
    ranking = _ranking(data.runs, rank, marked, highlight_pipeline_job, highlight_run_id)
    rows = ranking["rows"]
    leader = next((r.run for r in rows[:1] if r.rank is not None), None)
    data.notes += notes.all_notes(
        error, missing, data.runs, rows, rank, ranking["reference"], ranking["apart"]
    )
    model = ReportModel(
        experiment=experiment,
        data=data,
        rank=rank,
        stats=aggregate.dashboard(data.runs, HEADLINE_METRIC, highlight_pipeline_job, leader),
        compare_runs=compare_runs,
        chosen_by_id=bool(compare_run_ids),
        detail_runs=detail_runs,
        ui_url=safe_ui_url(ui_url),
        highlight_run_id=highlight_run_id,
        tracking_uri=TrackingUri(tracking_uri).redacted,
        generated=dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        highlight_pipeline_job=highlight_pipeline_job,
        **ranking,
    )
    return model, reader.fetch_s
