"""Write the experiment report: HTML views, the Markdown summary and the KFP metrics.

:func:`write_report` is the one entry point; the KFP ``render_report`` component and
``python -m reporting`` both call it. It reads the view model (:mod:`reporting.report_model`), then
hands it to the page builders (:mod:`reporting.pages`) and the summary writers
(:mod:`reporting.summary`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from reporting import charts, pages, summary
from reporting.histories import HistoryFetcher
from reporting.query import TrackingUnreachableError
from reporting.report_model import ReportModel, read_model
from trainer import contract
from trainer.tracking import TrackingUri

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ReportResult:
    """What :func:`write_report` produced.

    Attributes:
        pages: View name -> path of its HTML file (every view plus ``contract.VIEW_COMBINED``).
        display_names: View name -> title to show for the artifact.
        markdown: KFP Markdown summary (also written to ``contract.SUMMARY_FILE``).
        metrics: Flat name -> float for KFP Metrics (Vertex run compare).
        run_count: Runs in the experiment.
        reachable: Whether MLflow answered.
        mlflow_s: Seconds spent reading from MLflow.
        total_s: Seconds for the whole report.
    """

    pages: dict[str, str]
    display_names: dict[str, str]
    markdown: str
    metrics: dict[str, float]
    run_count: int
    reachable: bool
    mlflow_s: float = 0.0
    total_s: float = 0.0


class ReportUnreachableError(RuntimeError):
    """MLflow was unreachable and ``fail_on_unreachable`` was set; the pages were still written.

    Attributes:
        result: The :class:`ReportResult` describing the "unreachable" pages.
    """

    def __init__(self, message: str, result: ReportResult):
        super().__init__(message)
        self.result = result


def _write(out: Path, html_pages: dict[str, str], markdown: str) -> dict[str, str]:
    """Write ``<view>.html`` for each page and the summary; returns view -> path."""
    paths = {}
    for view, text in html_pages.items():
        path = out / f"{view}.html"
        path.write_text(text, encoding="utf-8")
        paths[view] = str(path)
    (out / contract.SUMMARY_FILE).write_text(markdown, encoding="utf-8")
    return paths


def _unreachable(out: Path, tracking_uri: str, experiment: str, reason: str) -> ReportResult:
    """Write pages and a summary that say MLflow could not be read, and why."""
    safe_uri = TrackingUri(tracking_uri).redacted
    log.error("MLflow unreachable at %s: %s", safe_uri, reason)
    markdown = summary.unreachable_markdown(safe_uri, experiment, reason)
    paths = _write(out, pages.unreachable_pages(safe_uri, experiment, reason), markdown)
    metrics = dict(summary.UNREACHABLE_METRICS)
    return ReportResult(paths, dict(contract.VIEW_TITLES), markdown, metrics, 0, False)


def _written(out: Path, model: ReportModel, fetched: float, started: float) -> ReportResult:
    """Write the pages and the summary of a model read from MLflow."""
    markdown = summary.markdown(model)
    paths = _write(out, pages.render_pages(model), markdown)
    total = time.perf_counter() - started
    runs = len(model.data.runs)
    log.info(
        "Report for %r: %d runs, %d pages in %s (%.2fs; MLflow %.2fs)",
        *(model.experiment, runs, len(paths), out, total, fetched),
    )
    metrics = summary.kfp_metrics(model)
    titles = dict(contract.VIEW_TITLES)
    return ReportResult(paths, titles, markdown, metrics, runs, True, fetched, total)


def write_report(
    tracking_uri: str,
    experiment: str,
    out_dir: str,
    rank_metric: str = contract.DEFAULT_RANK_METRIC,
    ui_url: str = "",
    compare_run_ids: list[str] | None = None,
    top_n: int = contract.DEFAULT_TOP_N,
    fail_on_unreachable: bool = True,
    highlight_run_id: str = "",
    detail_runs: int = contract.DEFAULT_DETAIL_RUNS,
    highlight_pipeline_job: str = "",
    end_lost: bool = True,
    lost_after_s: float = contract.LOST_AFTER_S,
    _history_fetcher: HistoryFetcher | None = None,
) -> ReportResult:
    """Query an MLflow experiment and write the report's HTML views, Markdown and metrics.

    Args:
        tracking_uri: MLflow tracking URI (server URL or database/file store).
        experiment: Experiment name.
        out_dir: Folder for ``<view>.html`` (the combined page is ``report.html``) and
            ``summary.md`` (created).
        rank_metric: Metric that ranks the leaderboard and fills the heatmap.
        ui_url: MLflow UI base URL; when given each run links to its page there.
        compare_run_ids: Runs to compare; empty or None compares the top ``top_n``.
        top_n: How many top runs to compare when no ids are given.
        fail_on_unreachable: Raise :class:`ReportUnreachableError` (after writing a page saying
            so) when MLflow does not answer; otherwise return with ``reachable=False``.
        highlight_run_id: Run to mark as "this run" (the pipeline's own training run).
        detail_runs: How many runs (best first) get their own chart and epoch table on the
            training-curves page; 0 means every run with a history. Only these runs' full
            histories are fetched; the others' overview curves are.
        highlight_pipeline_job: A pipeline job (tag ``contract.TAG_PIPELINE_JOB``) whose runs
            are marked as "this pipeline job's runs" in every view; the dashboard says how
            many it trained, finished and failed.
        end_lost: End FAILED the lost runs (RUNNING, silent for over ``lost_after_s``: their
            process died) before reading; else only show them as lost.
        lost_after_s: Seconds without a heartbeat after which a RUNNING run is lost.
        _history_fetcher: Benchmark hook replacing the history fetch strategy.

    Returns:
        The pages written, their display names, the Markdown summary and the KFP metrics.

    Raises:
        ReportUnreachableError: MLflow was unreachable and ``fail_on_unreachable`` is set.
        ValueError: ``detail_runs`` is negative.
    """
    if detail_runs < 0:
        raise ValueError(
            f"detail_runs: expected 0 (every run) or a positive count, got {detail_runs}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # The per-run charts' child processes start while the runs are read (0: every run, many).
    charts.prepare_run_curves_many(detail_runs or charts.PARALLEL_CHARTS_MIN)
    try:
        model, fetched = read_model(
            tracking_uri,
            experiment,
            rank_metric,
            compare_run_ids=compare_run_ids,
            top_n=top_n,
            detail_runs=detail_runs,
            ui_url=ui_url,
            highlight_run_id=highlight_run_id,
            highlight_pipeline_job=highlight_pipeline_job,
            history_fetcher=_history_fetcher,
            end_lost=end_lost,
            lost_after_s=lost_after_s,
        )
    except TrackingUnreachableError as exc:
        result = _unreachable(out, tracking_uri, experiment, str(exc))
        if fail_on_unreachable:
            message = f"MLflow unreachable at {TrackingUri(tracking_uri).redacted}: {exc}"
            raise ReportUnreachableError(message, result) from exc
        return result
    return _written(out, model, fetched, started)
