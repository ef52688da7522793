"""Render the experiment report: self-contained HTML views, a Markdown summary, KFP metrics.

``render_report`` is the one entry point; the KFP ``render_report`` component and
``python -m reporting`` both call it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import re
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup

from reporting import charts, views
from reporting.query import (
    ExperimentData,
    ExperimentReader,
    HistoryFetcher,
    RunRecord,
    TrackingUnreachableError,
)
from trainer import contract

log = logging.getLogger(__name__)

VIEWS: tuple[str, ...] = (
    "dashboard",
    "leaderboard",
    "comparison",
    "training_curves",
    "heatmap",
    "recall_at_k",
)
DISPLAY_NAMES: dict[str, str] = {
    "index": "Experiment report",
    "dashboard": "Dashboard",
    "leaderboard": "Leaderboard",
    "comparison": "Run comparison",
    "training_curves": "Training curves",
    "heatmap": "Config heatmap",
    "recall_at_k": "Recall@k and params",
}
# Per-run chart + epoch table on the training-curves page for this many runs (leaderboard order)
# unless render_report is told otherwise; every run still appears in the overview chart.
DETAIL_RUNS = 12
LATEST_RUNS = 10
MARKDOWN_TOP = 10

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("reporting", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["fmt"] = views.fmt
_env.filters["label"] = views.metric_label
_env.globals.update(contract=contract, views=views)


def _pct(value: float | None) -> str:
    if value is None:
        return "\u2014"
    return f"{value * 100:+.1f}%"


def _when(ms: int | None) -> str:
    if not ms:
        return "\u2014"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2014"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_env.filters["pct"] = _pct
_env.filters["when"] = _when
_env.filters["duration"] = _duration


class ReportUnreachableError(RuntimeError):
    """MLflow was unreachable and ``fail_on_unreachable`` was set; the pages were still written.

    Attributes:
        result: The :class:`ReportResult` describing the "unreachable" pages.
    """

    def __init__(self, message: str, result: ReportResult):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class ReportResult:
    """What :func:`render_report` produced.

    Attributes:
        pages: View name -> path of its HTML file (all views plus "index", the combined page).
        display_names: View name -> title to show for the artifact.
        markdown: KFP Markdown summary (also written to ``summary.md``).
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


def redact_uri(uri: str) -> str:
    """A tracking URI fit to print: user info and query string removed."""
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc and "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
    return urllib.parse.urlunsplit(parts._replace(query="", fragment=""))


def _safe_ui_url(ui_url: str) -> str:
    ui_url = (ui_url or "").strip().rstrip("/")
    if ui_url and urllib.parse.urlsplit(ui_url).scheme not in ("http", "https"):
        log.warning("Ignoring MLflow UI URL %r: only http(s) links are written", ui_url)
        return ""
    return ui_url


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """Link to a run in the MLflow UI ("" when no UI base URL is known)."""
    if not ui_url or not experiment_id:
        return ""
    q = urllib.parse.quote
    return f"{ui_url}/#/experiments/{q(experiment_id, safe='')}/runs/{q(run_id, safe='')}"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_escape(text: str) -> str:
    """Escape text for a Markdown table cell (also neutralises raw HTML)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.split())


def _metric_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


@dataclasses.dataclass
class _Context:
    experiment: str
    data: ExperimentData
    rank_metric: str
    ui_url: str
    highlight_run_id: str
    rows: list[views.LeaderRow]
    compare_runs: list[RunRecord]
    missing_compare: list[str]
    chosen_by_id: bool
    generated: str
    tracking_uri: str
    elapsed_fetch_s: float
    detail_runs: int

    def url(self, run: RunRecord) -> str:
        return run_url(self.ui_url, self.data.experiment_id, run.run_id)


def _section(name: str, **kw: object) -> Markup:
    return Markup(_env.get_template(f"_{name}.html.j2").render(**kw))


def _common(ctx: _Context) -> dict[str, object]:
    return {
        "ctx": ctx,
        "ks": contract.RECALL_KS,
        "baselines": contract.BASELINES,
        "epoch_metric": views.epoch_metric_for(ctx.rank_metric),
        "lower_better": views.lower_is_better(ctx.rank_metric),
    }


def _dashboard(ctx: _Context) -> Markup:
    headline = contract.test_recall_key(max(contract.RECALL_KS))
    stats = views.dashboard(ctx.data.runs, headline)
    timeline = charts.metric_timeline(ctx.data.runs, headline, ctx.highlight_run_id)
    best_row = next((r for r in ctx.rows if stats.best_run and r.run is stats.best_run), None)
    return _section(
        "dashboard",
        stats=stats,
        best_row=best_row,
        latest=views.latest_runs(ctx.data.runs, LATEST_RUNS),
        top=[r for r in ctx.rows if r.rank is not None][:5],
        timeline=Markup(timeline),
        headline=headline,
        **_common(ctx),
    )


def _leaderboard(ctx: _Context) -> Markup:
    return _section("leaderboard", rows=ctx.rows, **_common(ctx))


def _comparison(ctx: _Context) -> Markup:
    runs = ctx.compare_runs
    metric_rows = views.compare_metrics(runs)
    param_rows = views.compare_params(runs)
    keys = [contract.METRIC_VAL_LOSS, views.epoch_metric_for(ctx.rank_metric)]
    keys = list(dict.fromkeys(keys))
    curves = Markup(charts.overlay_curves(runs, keys, title="Training curves of compared runs"))
    return _section(
        "comparison",
        runs=runs,
        metric_rows=metric_rows,
        param_rows=param_rows,
        n_diff=sum(1 for r in param_rows if not r.same),
        curves=curves if any(r.has_history for r in runs) else None,
        chosen_by_id=ctx.chosen_by_id,
        **_common(ctx),
    )


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


def _overview_keys(rank_metric: str) -> list[str]:
    """History metrics drawn for every run: losses and the ranking metric's per-epoch twin."""
    keys = [contract.METRIC_LOSS, contract.METRIC_VAL_LOSS, views.epoch_metric_for(rank_metric)]
    return list(dict.fromkeys(keys))


def _training(ctx: _Context) -> Markup:
    ordered = [r.run for r in ctx.rows]
    with_hist = [r for r in ordered if r.has_history]
    without = [r for r in ordered if not r.has_history]
    keys = [k for k in _overview_keys(ctx.rank_metric) if k in ctx.data.history_keys]
    overview = (
        Markup(charts.overlay_curves(with_hist, keys, title="All runs")) if with_hist else None
    )
    details = []
    for run in with_hist[: ctx.detail_runs]:
        steps = sorted({s for pts in run.history.values() for s, _ in pts})
        table_keys = [k for k in ctx.data.history_keys if run.history.get(k)]
        by_key = {k: dict(run.history[k]) for k in table_keys}
        best_epoch = views.epoch_values(run, views.epoch_metric_for(ctx.rank_metric))[2]
        details.append(
            {
                "run": run,
                "svg": Markup(charts.run_curves(run)),
                "steps": steps,
                "metric_keys": table_keys,
                "by_key": by_key,
                "best_epoch": best_epoch,
                "best_per_key": {
                    k: views.best_value(by_key[k].values(), k) if views.has_direction(k) else None
                    for k in table_keys
                },
            }
        )
    return _section(
        "training_curves",
        overview=overview,
        details=details,
        more=with_hist[ctx.detail_runs :],
        without=without,
        n_with=len(with_hist),
        **_common(ctx),
    )


def _heat_color(value: float, vmin: float, vmax: float, lower_better: bool) -> tuple[str, bool]:
    t = 0.5 if vmax == vmin else (value - vmin) / (vmax - vmin)
    if lower_better:
        t = 1.0 - t
    # White (worst) to a saturated blue (best), perceptually even enough for a table.
    lo, hi = (248, 250, 252), (29, 78, 216)
    rgb = [round(a + (b - a) * t) for a, b in zip(lo, hi, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb), t > 0.55


def _heatmap(ctx: _Context) -> Markup:
    hm = views.heatmap(ctx.data.runs, ctx.rank_metric)
    lower = views.lower_is_better(ctx.rank_metric)
    grid = []
    best = views.best_value((c.mean for c in hm.cells.values()), ctx.rank_metric)
    for fc in hm.feature_configs:
        row = []
        for mc in hm.model_configs:
            cell = hm.cell(fc, mc)
            style, dark = "", False
            if cell.mean is not None and hm.vmin is not None and hm.vmax is not None:
                color, dark = _heat_color(cell.mean, hm.vmin, hm.vmax, lower)
                style = f"background-color:{color}"
            row.append(
                {
                    "fc": fc,
                    "mc": mc,
                    "cell": cell,
                    "style": style,
                    "dark": dark,
                    "best": cell.mean is not None and cell.mean == best,
                }
            )
        grid.append((fc, row))
    return _section("heatmap", hm=hm, grid=grid, **_common(ctx))


def _recall(ctx: _Context) -> Markup:
    ranked_runs = [r.run for r in ctx.rows]
    by_run = views.recall_by_run(ranked_runs)[: len(charts.PALETTE)]
    by_config = views.recall_by_config(ctx.data.runs)
    baselines = views.baseline_means(ctx.data.runs)
    params = views.varying_params(ctx.data.runs)
    return _section(
        "recall_at_k",
        chart=Markup(charts.recall_at_k(by_run, by_config[: len(charts.PALETTE)], baselines)),
        by_config=by_config,
        baseline_rows=baselines,
        parallel=Markup(charts.parallel_coordinates(ctx.data.runs, params, ctx.rank_metric)),
        params=params,
        n_runs=len(ranked_runs),
        **_common(ctx),
    )


_BUILDERS = {
    "dashboard": _dashboard,
    "leaderboard": _leaderboard,
    "comparison": _comparison,
    "training_curves": _training,
    "heatmap": _heatmap,
    "recall_at_k": _recall,
}


def _page(
    title: str,
    view: str,
    sections: Sequence[tuple[str, Markup]],
    ctx: _Context | None,
    banner: str = "",
    experiment: str = "",
    footer: dict[str, str] | None = None,
) -> str:
    return _env.get_template("layout.html.j2").render(
        title=title,
        view=view,
        sections=sections,
        display_names=DISPLAY_NAMES,
        combined=view == "index",
        banner=banner,
        experiment=experiment,
        footer=footer or {},
        ctx=ctx,
    )


def _summary_metrics(ctx: _Context) -> dict[str, float]:
    runs = ctx.data.runs
    stats = views.dashboard(runs, contract.test_recall_key(max(contract.RECALL_KS)))
    out: dict[str, float] = {
        "run_count": float(stats.total),
        "finished_runs": float(stats.finished),
        "failed_runs": float(stats.failed),
        "runs_with_history": float(stats.with_history),
        "mlflow_reachable": 1.0,
    }
    if stats.mean is not None:
        out[f"mean_{stats.headline_metric}"] = stats.mean
    top = next((r for r in ctx.rows if r.rank is not None), None)
    if top is not None:
        out[f"best_run_{_metric_name(ctx.rank_metric)}"] = float(top.value)  # type: ignore[arg-type]
        for k in contract.RECALL_KS:
            v = top.run.metrics.get(contract.test_recall_key(k))
            if v is not None and not math.isnan(v):
                out[f"best_run_{contract.test_recall_key(k)}"] = v
        for name, lift in top.lifts.items():
            if lift is not None:
                out[f"best_run_lift_over_{_metric_name(name)}"] = lift
    return out


def _markdown(ctx: _Context) -> str:
    stats = views.dashboard(ctx.data.runs, contract.test_recall_key(max(contract.RECALL_KS)))
    label = views.metric_label(ctx.rank_metric)
    lines = [
        f"# {md_escape(ctx.experiment)}: experiment report",
        "",
        (
            f"**{stats.total}** runs: {stats.finished} finished, {stats.failed} failed, "
            f"{stats.running} running. Ranked by **{md_escape(ctx.rank_metric)}** "
            f"({'lower' if views.lower_is_better(ctx.rank_metric) else 'higher'} is better)."
        ),
        "",
    ]
    lines += [f"> {md_escape(n)}" for n in ctx.data.notes]
    ranked = [r for r in ctx.rows if r.rank is not None]
    if not ranked:
        lines.append(f"No run has logged `{md_escape(ctx.rank_metric)}` yet.")
        return "\n".join(lines) + "\n"
    top = ranked[0]
    lines.append(
        f"Best run: **{md_escape(top.run.name)}** ({md_escape(top.run.feature_config)} \u00d7 "
        f"{md_escape(top.run.model_config)}), {md_escape(label)} = {views.fmt(top.value)}."
    )
    lines.append("")
    head = ["#", "Run", "Feature config", "Model config", label]
    ks = [k for k in contract.RECALL_KS if contract.test_recall_key(k) != ctx.rank_metric]
    head += [f"Test R@{k}" for k in ks]
    head += [f"Lift vs {b}" for b in contract.BASELINES]
    lines.append("| " + " | ".join(md_escape(h) for h in head) + " |")
    lines.append("|" + "|".join(["---:"] + ["---"] * 3 + ["---:"] * (len(head) - 4)) + "|")
    for row in ranked[:MARKDOWN_TOP]:
        name = md_escape(row.run.name)
        link = ctx.url(row.run)
        if link:
            name = f"[{name}]({link})"
        if row.run.run_id == ctx.highlight_run_id:
            name += " \u2190 this run"
        cells = [
            str(row.rank),
            name,
            md_escape(row.run.feature_config),
            md_escape(row.run.model_config),
            views.fmt(row.value),
        ]
        cells += [views.fmt(row.recalls[k]) for k in ks]
        cells += [md_escape(_pct(row.lifts[b])) for b in contract.BASELINES]
        lines.append("| " + " | ".join(cells) + " |")
    if len(ranked) > MARKDOWN_TOP:
        lines.append("")
        lines.append(f"\u2026and {len(ranked) - MARKDOWN_TOP} more; see the leaderboard artifact.")
    return "\n".join(lines) + "\n"


def _write(out: Path, name: str, text: str) -> str:
    path = out / f"{name}.html"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _unreachable(out: Path, tracking_uri: str, experiment: str, reason: str) -> ReportResult:
    safe_uri = redact_uri(tracking_uri)
    section = _section("unreachable", tracking_uri=safe_uri, reason=reason, experiment=experiment)
    pages = {}
    for view in ("index", *VIEWS):
        pages[view] = _write(
            out,
            view,
            _page(
                f"{DISPLAY_NAMES[view]} \u2014 MLflow unreachable",
                view,
                [("unreachable", section)],
                None,
                experiment=experiment,
                footer={"Tracking URI": safe_uri},
            ),
        )
    markdown = (
        f"# {md_escape(experiment)}: experiment report\n\n"
        f"**MLflow was unreachable** at `{md_escape(safe_uri)}`; no runs could be read.\n\n"
        f"> {md_escape(reason)}\n"
    )
    (out / "summary.md").write_text(markdown, encoding="utf-8")
    return ReportResult(
        pages, dict(DISPLAY_NAMES), markdown, {"run_count": 0.0, "mlflow_reachable": 0.0}, 0, False
    )


def render_report(
    tracking_uri: str,
    experiment: str,
    out_dir: str,
    rank_metric: str = contract.DEFAULT_RANK_METRIC,
    ui_url: str = "",
    compare_run_ids: list[str] | None = None,
    top_n: int = 5,
    fail_on_unreachable: bool = True,
    highlight_run_id: str = "",
    detail_runs: int | None = None,
    _history_fetcher: HistoryFetcher | None = None,
) -> ReportResult:
    """Query an MLflow experiment and write the report's HTML views, Markdown and metrics.

    Args:
        tracking_uri: MLflow tracking URI (server URL or database/file store).
        experiment: Experiment name.
        out_dir: Folder for ``<view>.html``, ``index.html`` and ``summary.md`` (created).
        rank_metric: Metric that ranks the leaderboard and fills the heatmap.
        ui_url: MLflow UI base URL; when given each run links to its page there.
        compare_run_ids: Runs to compare; empty or None compares the top ``top_n``.
        top_n: How many top runs to compare when no ids are given.
        fail_on_unreachable: Raise :class:`ReportUnreachableError` (after writing a page saying
            so) when MLflow does not answer; otherwise return with ``reachable=False``.
        highlight_run_id: Run to mark as "this run" (the pipeline's own training run).
        detail_runs: How many runs (best first) get their own chart and epoch table on the
            training-curves page; 0 means every run with a history. Default: ``DETAIL_RUNS``.
            Only these runs' full histories are fetched; the others' overview curves are.
        _history_fetcher: Benchmark hook replacing the history fetch strategy.

    Returns:
        The pages written, their display names, the Markdown summary and the KFP metrics.

    Raises:
        ReportUnreachableError: MLflow was unreachable and ``fail_on_unreachable`` is set.
    """
    if detail_runs is None:
        detail_runs = DETAIL_RUNS
    if detail_runs < 0:
        raise ValueError(
            f"detail_runs: expected 0 (every run) or a positive count, got {detail_runs}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reader = ExperimentReader(tracking_uri, _history_fetcher)
    try:
        data = reader.read(experiment)
    except TrackingUnreachableError as exc:
        log.error("MLflow unreachable at %s: %s", redact_uri(tracking_uri), exc)
        result = _unreachable(out, tracking_uri, experiment, str(exc))
        if fail_on_unreachable:
            raise ReportUnreachableError(
                f"MLflow unreachable at {redact_uri(tracking_uri)}: {exc}", result
            ) from exc
        return result
    # Every run's curves of the metrics the overview draws (and the leaderboard's epoch values
    # fall back to) ...
    history_error = _fill_histories(reader, data, data.runs, _overview_keys(rank_metric))
    rows = views.leaderboard(data.runs, rank_metric)
    by_id = {r.run_id: r for r in data.runs}
    compare_runs, missing = views.choose_compare_runs(rows, by_id, compare_run_ids, top_n)
    # ... and every history metric only for the runs shown in detail.
    with_history = [r.run for r in rows if r.run.has_history]
    detail_runs = detail_runs or len(with_history)
    if history_error is None:
        detail = with_history[:detail_runs]
        history_error = _fill_histories(reader, data, [*detail, *compare_runs], data.history_keys)
    if history_error is not None:
        # The runs were read: report them, say what is missing.
        data.notes.append(
            f"MLflow stopped answering while per-epoch histories were read ({history_error}); "
            "some training curves and epoch tables are missing."
        )
    fetched = reader.fetch_s
    if missing:
        data.notes.append("Runs asked for in the comparison but not found: " + ", ".join(missing))
    if data.runs and not any(r.rank is not None for r in rows):
        data.notes.append(f"No run has logged the ranking metric {rank_metric!r}.")
    ctx = _Context(
        experiment=experiment,
        data=data,
        rank_metric=rank_metric,
        ui_url=_safe_ui_url(ui_url),
        highlight_run_id=highlight_run_id,
        rows=rows,
        compare_runs=compare_runs,
        missing_compare=missing,
        chosen_by_id=bool(compare_run_ids),
        generated=dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        tracking_uri=redact_uri(tracking_uri),
        elapsed_fetch_s=fetched,
        detail_runs=detail_runs,
    )
    sections = {view: _BUILDERS[view](ctx) for view in VIEWS}
    footer = {
        "Experiment": experiment,
        "Tracking URI": ctx.tracking_uri,
        "Runs": str(len(data.runs)),
        "Histories": data.history_source or "\u2014",
        "Generated": ctx.generated,
    }
    pages: dict[str, str] = {}
    for view in VIEWS:
        pages[view] = _write(
            out,
            view,
            _page(
                DISPLAY_NAMES[view],
                view,
                [(view, sections[view])],
                ctx,
                experiment=experiment,
                footer=footer,
            ),
        )
    pages["index"] = _write(
        out,
        "index",
        _page(
            DISPLAY_NAMES["index"],
            "index",
            [(v, sections[v]) for v in VIEWS],
            ctx,
            experiment=experiment,
            footer=footer,
        ),
    )
    markdown = _markdown(ctx)
    (out / "summary.md").write_text(markdown, encoding="utf-8")
    metrics = _summary_metrics(ctx)
    total = time.perf_counter() - started
    log.info(
        "Report for %r: %d runs, %d pages in %s (%.2fs; MLflow %.2fs)",
        experiment,
        len(data.runs),
        len(pages),
        os.fspath(out),
        total,
        fetched,
    )
    return ReportResult(
        pages, dict(DISPLAY_NAMES), markdown, metrics, len(data.runs), True, fetched, total
    )


__all__ = ["ReportResult", "ReportUnreachableError", "render_report"]
