"""The report's HTML: one section per view from the view model, laid out as standalone pages.

Over 400 lines on purpose: one short builder per view (and the cost chart's points beside the
leaderboard's), sharing the template environment, the chart guard and the page layout.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import jinja2
from markupsafe import Markup

from reporting import aggregate, charts, promotion, rungs, slices, ties
from reporting import cost as run_cost
from reporting.metric import best_value, fmt, has_direction, label, pct
from reporting.records import RunRecord
from reporting.report_model import HEADLINE_METRIC, ReportModel, overview_keys
from reporting.text import attr, show
from trainer import contract

log = logging.getLogger(__name__)

# The dashboard lists this many latest runs and this many top runs.
LATEST_RUNS = 10
DASHBOARD_TOP = 5


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


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("reporting", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    fmt=fmt,
    label=label,
    pct=pct,
    when=_when,
    duration=_duration,
    show=show,
    attr=attr,
    usd=run_cost.usd,
)
_env.globals.update(contract=contract)


def _chart(what: str, draw: Callable[..., str], *args: object, **kw: object) -> Markup:
    """A chart's SVG, or a note saying it could not be drawn: one bad run spoils no page."""
    try:
        return Markup(draw(*args, **kw))
    # Any failure of one chart (matplotlib on a pathological series) must leave the rest of
    # the report standing; it is logged with its traceback and named on the page.
    except Exception as exc:  # noqa: BLE001
        log.exception("Could not draw %s", what)
        message = f"Could not draw {what}: {type(exc).__name__}: {exc}"
        return Markup('<p class="banner error chart-error">{}</p>').format(show(message, 400))


def _section(name: str, **kw: object) -> Markup:
    return Markup(_env.get_template(f"_{name}.html.j2").render(**kw))


def _common(model: ReportModel) -> dict[str, object]:
    return {"model": model, "ks": contract.RECALL_KS, "baselines": model.baselines}


def _dashboard(model: ReportModel) -> Markup:
    stats = model.stats
    marked = {r.run_id for r in model.data.runs if model.marked(r)}
    what = "this pipeline job's runs" if model.highlight_pipeline_job else "this pipeline's run"
    # The rank metric, not the test headline: "best so far" is a choice, made on validation.
    timeline = _chart(
        "the rank metric by run",
        charts.metric_timeline,
        model.data.runs,
        model.rank.name,
        marked,
        marked_label=what,
    )
    best_row = next((r for r in model.rows if stats.best_run and r.run is stats.best_run), None)
    return _section(
        contract.VIEW_DASHBOARD,
        stats=stats,
        best_row=best_row,
        latest=aggregate.latest_runs(model.data.runs, LATEST_RUNS),
        top=model.ranked[:DASHBOARD_TOP],
        timeline=timeline,
        headline=HEADLINE_METRIC,
        decision=ties.decision(model.rows, model.rank, HEADLINE_METRIC),
        cost_sentence=run_cost.cost_sentence(model.rows, model.costs, model.rank.label),
        gate=promotion.latest_decision(model.data.runs, model.highlight_pipeline_job),
        **_common(model),
    )


def _cost_chart(model: ReportModel) -> Markup:
    """The rank metric of every ranked run with a cost against that cost, the front marked.

    Empty when no run logged a cost (an experiment trained before costs were recorded).
    """
    costs = model.costs
    if not costs:
        return Markup("")
    points = [
        (r.run, costs[r.run.run_id].usd, r.value)
        for r in model.ranked
        if r.run.run_id in costs and r.value is not None
    ]
    front = run_cost.pareto_front(
        [(run.run_id, x, y) for run, x, y in points], model.rank.lower_better
    )
    marked = {run.run_id for run, _, _ in points if model.marked(run)}
    return _chart("the rank metric against cost", charts.cost_quality, points, front,
                  model.rank.name, marked)  # fmt: skip


def _leaderboard(model: ReportModel) -> Markup:
    return _section(
        contract.VIEW_LEADERBOARD,
        cost_chart=_cost_chart(model),
        n_costless=sum(1 for r in model.rows if r.run.run_id not in model.costs),
        rows=model.listed,
        apart=model.apart_listed,
        n_apart=len(model.apart),
        unlisted=model.unlisted,
        n_unlisted=model.unlisted_runs,
        **_common(model),
    )


def _comparison(model: ReportModel) -> Markup:
    runs = model.compare_runs
    param_rows = aggregate.compare_params(runs)
    keys = list(dict.fromkeys([contract.METRIC_VAL_LOSS, model.rank.epoch_metric]))
    title = "Training curves of compared runs"
    curves = _chart("the compared runs' curves", charts.overlay_curves, runs, keys, title=title)
    return _section(
        contract.VIEW_COMPARISON,
        runs=runs,
        metric_rows=aggregate.compare_metrics(runs),
        param_rows=param_rows,
        n_diff=sum(1 for r in param_rows if not r.same),
        curves=curves if any(r.has_history for r in runs) else None,
        chosen_by_id=model.chosen_by_id,
        **_common(model),
    )


def _drawn(what: str, drawn: tuple[str, str]) -> Markup:
    """A chart drawn elsewhere (``charts.run_curves_many``), or the note :func:`_chart` writes."""
    kind, text = drawn
    if kind == "svg":
        return Markup(text)
    log.error("Could not draw %s: %s", what, text)
    message = f"Could not draw {what}: {text}"
    return Markup('<p class="banner error chart-error">{}</p>').format(show(message, 400))


def _run_detail(model: ReportModel, run: RunRecord, drawn: tuple[str, str]) -> dict[str, object]:
    """One run's chart and epoch table (every history metric it logged, best values marked)."""
    table_keys = [k for k in model.data.history_keys if run.history.get(k)]
    by_key = {k: dict(run.history[k]) for k in table_keys}
    return {
        "run": run,
        "svg": _drawn(f"the curves of run {run.name!r}", drawn),
        "steps": sorted({s for pts in run.history.values() for s, _ in pts}),
        "metric_keys": table_keys,
        "by_key": by_key,
        "best_epoch": aggregate.epoch_values(run, model.rank.epoch_metric)[2],
        "best_per_key": {
            k: best_value(by_key[k].values(), k) if has_direction(k) else None for k in table_keys
        },
    }


def _with_history(model: ReportModel) -> list[RunRecord]:
    """The listed runs with a history, in the training curves' order (the detail ones first)."""
    ordered = [r.run for r in model.listed] + [a.run for a in model.apart_listed]
    return [r for r in ordered if r.has_history]


def _training_curves(model: ReportModel, drawing: charts.RunCurvesDrawing | None = None) -> Markup:
    """The training-curves view; ``drawing``: its per-run charts, started earlier."""
    ordered = [r.run for r in model.listed] + [a.run for a in model.apart_listed]
    with_hist = _with_history(model)
    keys = [k for k in overview_keys(model.rank) if k in model.data.history_keys]
    overview = (
        _chart("the overview curves", charts.overlay_curves, with_hist, keys, title="All runs")
        if with_hist
        else None
    )
    detail = with_hist[: model.detail_runs]
    drawn = (drawing or charts.start_run_curves(detail)).result()
    section = _section(
        contract.VIEW_TRAINING_CURVES,
        overview=overview,
        details=[_run_detail(model, run, d) for run, d in zip(detail, drawn, strict=True)],
        more=with_hist[model.detail_runs :],
        without=[r for r in ordered if not r.has_history],
        n_with=sum(1 for r in model.data.runs if r.has_history),
        n_unlisted=model.unlisted_runs + len(model.apart) - len(model.apart_listed),
        **_common(model),
    )
    return section + _rungs(model)


def _rungs(model: ReportModel) -> Markup:
    """A halving sweep's rung table (reporting/rungs.py); nothing for other sweeps."""
    table = rungs.rung_table(model.data.runs, model.highlight_pipeline_job)
    return _section("rungs", table=table, **_common(model)) if table else Markup("")


def _heat_color(value: float, vmin: float, vmax: float, lower_better: bool) -> tuple[str, bool]:
    t = 0.5 if vmax == vmin else (value - vmin) / (vmax - vmin)
    if lower_better:
        t = 1.0 - t
    # White (worst) to a saturated blue (best), perceptually even enough for a table.
    lo, hi = (248, 250, 252), (29, 78, 216)
    rgb = [round(a + (b - a) * t) for a, b in zip(lo, hi, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb), t > 0.55


def _heat_cell(
    hm: aggregate.Heatmap,
    fc: str,
    mc: str,
    best: float | None,
    lower_better: bool,
    jobs: dict[tuple[str, str], int],
) -> dict[str, object]:
    cell = hm.cell(fc, mc)
    style, dark = "", False
    if cell.mean is not None and hm.vmin is not None and hm.vmax is not None:
        color, dark = _heat_color(cell.mean, hm.vmin, hm.vmax, lower_better)
        style = f"background-color:{color}"
    best_cell = cell.mean is not None and cell.mean == best
    return {
        "fc": fc,
        "mc": mc,
        "cell": cell,
        "style": style,
        "dark": dark,
        "best": best_cell,
        "job": jobs.get((fc, mc), 0),
    }


def _heatmap(model: ReportModel) -> Markup:
    hm = aggregate.heatmap(
        model.compared, model.rank.name, lambda run, v: ties.interval(run, model.rank, v)
    )
    best = best_value((c.mean for c in hm.cells.values()), model.rank.name)
    lower = model.rank.lower_better
    jobs: dict[tuple[str, str], int] = {}
    for run in model.compared:
        if model.this_job(run) and aggregate.metric_value(run, model.rank.name) is not None:
            pair = (run.feature_config or "(none)", run.model_config or "(none)")
            jobs[pair] = jobs.get(pair, 0) + 1
    grid = [
        (fc, [_heat_cell(hm, fc, mc, best, lower, jobs) for mc in hm.model_configs])
        for fc in hm.feature_configs
    ]
    return _section(contract.VIEW_HEATMAP, hm=hm, grid=grid, **_common(model))


def _recall_at_k(model: ReportModel) -> Markup:
    ranked_runs = [r.run for r in model.rows]
    marked = {r.run_id for r in ranked_runs if model.marked(r)}
    by_run = aggregate.recall_by_run(ranked_runs, marked)[: len(charts.PALETTE)]
    by_config = aggregate.recall_by_config(model.compared)
    baselines = aggregate.baseline_means(model.compared)
    listed = {id(r.run) for r in model.listed}
    drawn = [run for run in model.compared if id(run) in listed]
    params = aggregate.varying_params(drawn, charts.PARALLEL_AXES)
    return _section(
        contract.VIEW_RECALL_AT_K,
        chart=_chart(
            "recall against k",
            charts.recall_at_k,
            by_run,
            by_config[: len(charts.PALETTE)],
            baselines,
        ),
        by_config=by_config,
        baseline_rows=baselines,
        parallel=_chart(
            "the parallel coordinates",
            charts.parallel_coordinates,
            drawn,
            params,
            model.rank,
        ),
        params=params,
        parallel_axes=charts.PARALLEL_AXES,
        n_shown=min(len(ranked_runs), len(charts.PALETTE)),
        **_common(model),
    )


def _slices(model: ReportModel) -> Markup:
    leader = model.ranked[0].run if model.ranked else None
    highlighted = [r for r in model.data.runs if model.this_run(r)]
    shown = [slices.run_slices(run, why) for run, why in slices.shown_runs(leader, highlighted)]
    return _section(
        contract.VIEW_SLICES,
        shown=shown,
        k=contract.SLICE_K,
        groups=slices.GROUP_TITLES,
        figures=contract.BEYOND_FIGURES,
        figure_titles=slices.FIGURE_TITLES,
        **_common(model),
    )


_BUILDERS: dict[str, Callable[[ReportModel], Markup]] = {
    contract.VIEW_DASHBOARD: _dashboard,
    contract.VIEW_LEADERBOARD: _leaderboard,
    contract.VIEW_COMPARISON: _comparison,
    contract.VIEW_TRAINING_CURVES: _training_curves,
    contract.VIEW_HEATMAP: _heatmap,
    contract.VIEW_RECALL_AT_K: _recall_at_k,
    contract.VIEW_SLICES: _slices,
}


def _page(
    title: str,
    view: str,
    sections: Sequence[tuple[str, Markup]],
    model: ReportModel | None,
    experiment: str,
    footer: dict[str, str],
) -> str:
    return _env.get_template("layout.html.j2").render(
        title=title,
        view=view,
        sections=sections,
        section_names=[name for name, _ in sections],
        nav=[contract.VIEW_COMBINED, *contract.VIEWS],
        titles=contract.VIEW_TITLES,
        combined=view == contract.VIEW_COMBINED,
        experiment=experiment,
        footer=footer,
        model=model,
    )


def render_pages(model: ReportModel) -> dict[str, str]:
    """Every view's page and the combined page (``contract.VIEW_COMBINED``), as HTML text."""
    # The per-run charts are drawn in child processes while the other views are built here.
    drawing = charts.start_run_curves(_with_history(model)[: model.detail_runs])
    try:
        built = {v: b(model) for v, b in _BUILDERS.items() if v != contract.VIEW_TRAINING_CURVES}
        built[contract.VIEW_TRAINING_CURVES] = _training_curves(model, drawing)
    finally:
        drawing.close()
    sections = {view: built[view] for view in contract.VIEWS}
    footer = {
        "Experiment": model.experiment,
        "Tracking URI": model.tracking_uri,
        "Runs": str(len(model.data.runs)),
        "Histories": model.data.history_source or "\u2014",
        "Generated": model.generated,
    }
    pages = {
        view: _page(
            contract.VIEW_TITLES[view],
            view,
            [(view, sections[view])],
            model,
            model.experiment,
            footer,
        )
        for view in contract.VIEWS
    }
    pages[contract.VIEW_COMBINED] = _page(
        contract.VIEW_TITLES[contract.VIEW_COMBINED],
        contract.VIEW_COMBINED,
        [(v, sections[v]) for v in contract.VIEWS],
        model,
        model.experiment,
        footer,
    )
    return pages


def unreachable_pages(safe_uri: str, experiment: str, reason: str) -> dict[str, str]:
    """Every page, each saying that MLflow at ``safe_uri`` (redacted) could not be read."""
    section = _section("unreachable", tracking_uri=safe_uri, reason=reason, experiment=experiment)
    return {
        view: _page(
            f"{contract.VIEW_TITLES[view]} \u2014 MLflow unreachable",
            view,
            [("unreachable", section)],
            None,
            experiment,
            {"Tracking URI": safe_uri},
        )
        for view in (contract.VIEW_COMBINED, *contract.VIEWS)
    }
