"""Charts drawn server-side with matplotlib (Agg/SVG, no pyplot state) into inline SVG strings.

Text from MLflow reaches the SVG as ``<text>`` elements (``svg.fonttype: none``); matplotlib's
SVG writer escapes it, mathtext is off (``text.parse_math: False``) so a ``$`` in a run name is
just a dollar, and long names are shortened with an ellipsis (the tables carry the full name).

Longer than 400 lines on purpose: the report's seven charts share one style (``_RC``), one
figure layout and one SVG writer, and read best next to each other; each function is short.
"""

from __future__ import annotations

import html
import io
import itertools
import logging
import math
import re
from collections.abc import Collection, Sequence
from typing import Any

import matplotlib
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reporting import aggregate
from reporting.metric import RankMetric, better, fmt, label, present
from reporting.records import RunRecord
from reporting.text import strip_bidi
from trainer import contract

PALETTE = [
    "#2563eb",
    "#ea580c",
    "#16a34a",
    "#dc2626",
    "#7c3aed",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
]
MUTED = "#cbd5e1"
LABEL_MAX = 36

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    # A fixed title position: automatic placement measures every tick label of every axes.
    "axes.titley": 1.0,
    "axes.titlepad": 6.0,
    "axes.labelsize": 9,
    "axes.edgecolor": "#94a3b8",
    "axes.labelcolor": "#334155",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.8,
    "xtick.color": "#475569",
    "ytick.color": "#475569",
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.image_inline": True,
}
_ids = itertools.count()
_SVG_OPEN = re.compile(r'<svg\b[^>]*?\swidth="[^"]*"\s+height="[^"]*"\s+viewBox="([^"]*)"')


def short(text: str, limit: int = LABEL_MAX) -> str:
    """A label for a chart: bidi controls dropped, shortened with an ellipsis (tables show more)."""
    text = strip_bidi(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _figure(
    width: float,
    height: float,
    ncols: int = 1,
    *,
    left: float = 0.62,
    right: float = 0.2,
    top: float = 0.34,
    bottom: float = 0.5,
    gap: float = 0.75,
) -> tuple[Figure, list]:
    """A figure with fixed margins in inches (a layout engine would double the drawing time)."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0].tolist()
    panel = (width - left - right - gap * (ncols - 1)) / ncols
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=gap / panel,
    )
    return fig, axes


def to_svg(fig: Figure, label: str, salt: int | None = None) -> str:
    """Render a figure as an inline ``<svg>`` element (no XML prolog, scalable, labelled).

    Args:
        fig: The figure.
        label: Accessible name (escaped here).
        salt: The chart's number on the page (None: the next one).

    Returns:
        The SVG markup.
    """
    buf = io.StringIO()
    salt = next(_ids) if salt is None else salt
    # A per-chart salt keeps matplotlib's clip-path / marker ids unique on the combined page.
    with matplotlib.rc_context({"svg.hashsalt": f"chart{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]

    def opening(m: re.Match) -> str:
        # Natural size: the viewBox is in points (1pt = 4/3 CSS px); shrink only to fit.
        width_px = float(m.group(1).split()[2]) * 4 / 3
        # The xlink namespace matplotlib declared here too: markers are <use xlink:href>, and
        # without it the chart is no well-formed XML outside an HTML page.
        return (
            f'<svg class="chart" role="img" aria-label="{html.escape(short(label, 200))}" '
            f'style="max-width:{width_px:.0f}px" preserveAspectRatio="xMinYMin meet" '
            f'viewBox="{m.group(1)}" xmlns:xlink="http://www.w3.org/1999/xlink"'
        )

    return _SVG_OPEN.sub(
        opening,
        text,
        count=1,
    )


def _points(run: RunRecord, key: str) -> tuple[list[int], list[float]]:
    # NaN, infinities and huge values are left out (the epoch tables show them; a note says so).
    pts = [(s, v) for s, v in run.history.get(key, []) if present(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#64748b", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _loss_panel(ax, run: RunRecord, key: str, title: str, color: str) -> None:
    """One loss on its own axes.

    Loss and val_loss differ by orders of magnitude when the validation loss sums over more
    candidates, so a shared axis would flatten one of them.
    """
    xs, ys = _points(run, key)
    if not xs:
        _empty(ax, f"no {key} history")
        return
    ax.plot(xs, ys, color=color, marker="o", ms=3, lw=1.6)
    ax.set_title(title)
    _epoch_axis(ax)


def run_curves_figure(run: RunRecord) -> tuple[Figure, str]:
    """Loss, val_loss (each on its own axes) and validation recall@k per epoch for one run."""
    with matplotlib.rc_context(_RC):
        fig, (ax_loss, ax_val, ax_rec) = _figure(10.2, 2.7, 3)
        _loss_panel(ax_loss, run, contract.METRIC_LOSS, "Training loss", PALETTE[0])
        _loss_panel(ax_val, run, contract.METRIC_VAL_LOSS, "Validation loss", PALETTE[1])
        drawn = False
        for i, k in enumerate(contract.RECALL_KS):
            xs, ys = _points(run, contract.val_recall_key(k))
            if xs:
                ax_rec.plot(xs, ys, color=PALETTE[2 + i], marker="o", ms=3, lw=1.6, label=f"@{k}")
                drawn = True
        if drawn:
            ax_rec.set_title("Validation recall@k")
            _epoch_axis(ax_rec)
            ax_rec.legend(loc="best", title="k", title_fontsize=8)
        else:
            _empty(ax_rec, "no recall history")
        return fig, f"Training curves of run {run.name}"


def _background_curves(ax, runs: Sequence[RunRecord], key: str) -> bool:
    """Thin grey context lines, one LineCollection for all runs; whether any was drawn."""
    background = []
    for run in runs:
        xs, ys = _points(run, key)
        if xs:
            background.append(list(zip(xs, ys, strict=True)))
    if background:
        ax.add_collection(LineCollection(background, colors=MUTED, linewidths=0.6))
        ax.autoscale_view()
    return bool(background)


def overlay_curves_figure(
    runs: Sequence[RunRecord],
    keys: Sequence[str],
    named: int = len(PALETTE),
    title: str = "Training curves",
) -> tuple[Figure, str]:
    """Per-epoch curves of several runs, one panel per metric key.

    The first ``named`` runs get a colour and a legend entry; the rest are drawn as thin grey
    context lines (one LineCollection, so a thousand runs stay cheap).
    """
    with matplotlib.rc_context(_RC):
        width = 4.2 * len(keys)
        labels_named = [short(r.name) for r in runs[:named]]
        ncols = _legend_columns(labels_named, width)
        legend_rows = math.ceil(len(labels_named) / ncols) if labels_named else 0
        # Room for the x label, then the legend's title and rows below it.
        fig, axes = _figure(
            width, 2.9 + 0.2 * legend_rows, len(keys), bottom=0.75 + 0.2 * legend_rows
        )
        for ax, key in zip(axes, keys, strict=True):
            drawn = _background_curves(ax, runs[named:], key)
            for i, run in enumerate(runs[:named]):
                xs, ys = _points(run, key)
                if xs:
                    ax.plot(
                        xs,
                        ys,
                        color=PALETTE[i % len(PALETTE)],
                        lw=1.7,
                        marker="o" if len(xs) <= 30 else None,
                        ms=2.5,
                        label=short(run.name),
                    )
                    drawn = True
            if not drawn:
                _empty(ax, f"no {key} history")
                continue
            ax.set_title(label(key))
            _epoch_axis(ax)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            if not handles:
                handles, labels = ax.get_legend_handles_labels()
        if handles:
            extra = f" (+{len(runs) - named} more in grey)" if len(runs) > named else ""
            fig.legend(
                handles,
                labels,
                loc="lower center",
                ncols=min(ncols, len(labels)),
                title=f"Runs{extra}",
                title_fontsize=8,
            )
        return fig, title


def _legend_columns(labels: Sequence[str], width_in: float, fontsize: float = 8) -> int:
    """Legend columns (at most 4) whose entries fit side by side in ``width_in`` inches."""
    if not labels:
        return 1
    # An entry: its handle (~2.5 em) and its text (~0.6 em per character), in inches.
    entry = (2.5 + 0.62 * max(len(t) for t in labels)) * fontsize / 72
    return max(1, min(4, int((width_in - 0.4) // entry)))


def _recall_baselines(ax, baselines: dict[str, list[float | None]]) -> None:
    """The heuristic baselines as black dashed/dotted lines."""
    ks = list(contract.RECALL_KS)
    for j, (name, vals) in enumerate(sorted(baselines.items())):
        pts = [(k, v) for k, v in zip(ks, vals, strict=True) if v is not None]
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                ls=":" if j else "--",
                color="#0f172a",
                lw=1.2,
                label=f"baseline: {name}",
            )


def _recall_per_run(ax, by_run: Sequence[aggregate.RecallSeries]) -> None:
    for i, s in enumerate(by_run):
        pts = [(k, v) for k, v in zip(s.ks, s.mean, strict=True) if v is not None]
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            ms=3.5,
            lw=1.5,
            color=PALETTE[i % len(PALETTE)],
            label=("\u2605 " if s.marked else "") + short(s.label),
        )


def _recall_per_config(ax, by_config: Sequence[aggregate.RecallSeries]) -> None:
    """Mean with error bars and a shaded +- std band per config."""
    for i, s in enumerate(by_config):
        pts = [
            (k, m, sd or 0.0) for k, m, sd in zip(s.ks, s.mean, s.std, strict=True) if m is not None
        ]
        color = PALETTE[i % len(PALETTE)]
        xs = [p[0] for p in pts]
        ax.errorbar(
            xs,
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            ms=3.5,
            lw=1.5,
            capsize=3,
            color=color,
            label=f"{short(s.label, 44)} (n={s.n})",
        )
        ax.fill_between(
            xs,
            [p[1] - p[2] for p in pts],
            [p[1] + p[2] for p in pts],
            color=color,
            alpha=0.12,
            lw=0,
        )


def _recall_axes(ax, title: str, has_series: bool, has_baselines: bool, missing: str) -> None:
    """Title, labels and legend of a recall@k panel; says what is missing."""
    if not has_series and not has_baselines:
        _empty(ax, "no test recall logged")
        return
    ax.set_title(title)
    ax.set_xlabel("k")
    ax.set_ylabel("test recall@k")
    ax.set_xticks(list(contract.RECALL_KS))
    # What is missing heads the legend: a free-standing note would sit on the legend.
    ax.legend(loc="upper left", fontsize=7, title=None if has_series else missing, title_fontsize=7)


def recall_at_k_figure(
    by_run: Sequence[aggregate.RecallSeries],
    by_config: Sequence[aggregate.RecallSeries],
    baselines: dict[str, list[float | None]],
) -> tuple[Figure, str]:
    """Test recall against k: per run, and mean +- std per config that ran several seeds."""
    with matplotlib.rc_context(_RC):
        fig, (ax_run, ax_cfg) = _figure(9.6, 3.6, 2, left=0.7)
        _recall_baselines(ax_run, baselines)
        _recall_baselines(ax_cfg, baselines)
        _recall_per_run(ax_run, by_run)
        _recall_per_config(ax_cfg, by_config)
        _recall_axes(ax_run, "Per run", bool(by_run), bool(baselines), "no test recall")
        _recall_axes(
            ax_cfg,
            "Mean \u00b1 std over seeds, per config",
            bool(by_config),
            bool(baselines),
            "no config ran with several seeds",
        )
        return fig, "Test recall against k"


def _axis_values(runs: Sequence[RunRecord], key: str) -> tuple[list[float | None], list[str], bool]:
    """Positions in [0, 1] of each run on a parallel-coordinates axis, tick labels, numeric?"""
    raw = [r.params.get(key) for r in runs]
    nums: list[float | None] = []
    numeric = True
    for v in raw:
        try:
            x = float(v) if v is not None else None
        except ValueError:
            numeric = False
            break
        if x is not None and not present(x):
            # "nan" or "inf" as a param value: a category, not a position on a scale.
            numeric = False
            break
        nums.append(x)
    values = [v for v in nums if v is not None] if numeric else []
    if numeric and values:
        lo, hi = min(values), max(values)
        use_log = lo > 0 and hi / lo >= 20
        f = math.log10 if use_log else (lambda x: x)
        span = (f(hi) - f(lo)) or 1.0
        pos = [None if v is None else (f(v) - f(lo)) / span for v in nums]
        return pos, [fmt(lo, 4), fmt(hi, 4)], True
    cats = sorted({str(v) for v in raw if v is not None})
    index = {c: i for i, c in enumerate(cats)}
    denom = max(1, len(cats) - 1)
    pos = [None if v is None else index[str(v)] / denom for v in raw]
    return pos, cats, False


# Parallel coordinates: at most this many param axes (the params that vary, contract
# params first; aggregate.varying_params), labels of at most this many characters on them, and at
# most this many values written beside a categorical axis.
PARALLEL_AXES = 6
PARALLEL_LABEL = 16
PARALLEL_MARKS = 8


def axis_label(param: str, number: int) -> str:
    """A parallel-coordinates axis title: its number and the param's last dotted part."""
    return f"{number}. {short(param.rsplit('.', 1)[-1], PARALLEL_LABEL - 3)}"


def _parallel_axis(ax, j: int, ticks: list[str], numeric: bool) -> None:
    """Axis ``j`` of a parallel-coordinates chart: a vertical line and its values beside it."""
    ax.axvline(j, color="#64748b", lw=0.8)
    if numeric:
        marks = [(0.0, ticks[0]), (1.0, ticks[-1])]
    else:
        denom = max(1, len(ticks) - 1)
        # Evenly chosen values, never closer than a line of text.
        step = max(1, math.ceil(len(ticks) / PARALLEL_MARKS))
        marks = [(i / denom, t) for i, t in enumerate(ticks)][::step]
    for y, t in marks:
        ax.text(
            j + 0.04,
            y,
            short(t, PARALLEL_LABEL),
            fontsize=7,
            va="center",
            color="#0f172a",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def parallel_coordinates_figure(
    runs: Sequence[RunRecord], params: Sequence[str], rank: RankMetric
) -> tuple[Figure, str]:
    """Params against the rank metric: one polyline per run, coloured by the metric.

    Axes are numbered and titled by the param's last dotted part (the page lists the full
    names); the metric's axis has no values of its own, the colour bar beside it gives them.
    """
    metric = rank.name
    params = list(params)[:PARALLEL_AXES]
    scored = [(r, aggregate.metric_value(r, metric)) for r in runs]
    scored = [(r, v) for r, v in scored if v is not None]
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(9.6, 3.8, left=0.3, right=1.3, bottom=0.45)
        if not scored or not params:
            _empty(ax, "needs runs with the metric and at least one param that varies")
            return fig, "Parallel coordinates"
        sruns = [r for r, _ in scored]
        values = [v for _, v in scored]
        axes = [_axis_values(sruns, p) for p in params]
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        metric_pos = [(v - lo) / span for v in values]
        lines, colors = [], []
        cmap = matplotlib.colormaps["viridis_r" if rank.lower_better else "viridis"]
        order = sorted(range(len(sruns)), key=lambda i: metric_pos[i])
        for i in order:
            pts = [(j, a[0][i]) for j, a in enumerate(axes) if a[0][i] is not None]
            pts.append((len(axes), metric_pos[i]))
            lines.append(pts)
            colors.append(cmap(metric_pos[i]))
        alpha = 0.9 if len(lines) <= 50 else 0.35
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=1.2, alpha=alpha))
        n = len(axes) + 1
        # Room left of the first axis for half its title, right of each for its values.
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(-0.08, 1.08)
        ax.set_yticks([])
        ax.grid(False)
        ax.spines["left"].set_visible(False)
        ax.spines["bottom"].set_visible(False)
        ax.set_xticks(range(n))
        titles = [axis_label(p, j + 1) for j, p in enumerate(params)]
        ax.set_xticklabels([*titles, short(rank.label, PARALLEL_LABEL)], fontsize=8)
        for j, (_, ticks, numeric) in enumerate(axes):
            _parallel_axis(ax, j, ticks, numeric)
        ax.axvline(n - 1, color="#64748b", lw=0.8)
        sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(lo, hi))
        cax = fig.add_axes((1 - 1.05 / 9.6, 0.45 / 3.8, 0.14 / 9.6, 1 - 0.8 / 3.8))
        fig.colorbar(sm, cax=cax, label=short(rank.label, 24))
        ax.set_title(f"Params against {short(rank.label, 40)} ({len(sruns)} runs)")
        return fig, f"Parallel coordinates of params against {metric}"


def metric_timeline_figure(
    runs: Sequence[RunRecord],
    metric: str,
    highlight: Collection[str] = frozenset(),
    marked_label: str = "this pipeline's run",
) -> tuple[Figure, str]:
    """The headline metric of each run in start order, best-so-far as a step line.

    Args:
        runs: The runs.
        metric: The metric drawn (runs without a finite value are left out).
        highlight: Run ids circled and named ``marked_label`` in the legend.
        marked_label: What the circled runs are.
    """
    scored = sorted(
        ((r.start_time, aggregate.metric_value(r, metric), r) for r in runs), key=lambda t: t[0]
    )
    scored = [t for t in scored if t[1] is not None]
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(9.6, 2.6, left=0.75)
        if not scored:
            _empty(ax, f"no run logged {metric}")
            return fig, f"{metric} by run"
        xs = list(range(1, len(scored) + 1))
        ys = [t[1] for t in scored]
        # Beyond the runs a page lists, the points go in as one embedded image (the axes, text
        # and lines stay vector): 10,000 SVG circles would be ~1.4 MiB and slow to draw.
        many = len(xs) > contract.REPORT_LISTED_RUNS
        ax.scatter(
            xs, ys, s=4 if many else 12, color=PALETTE[0], alpha=0.75, zorder=3, rasterized=many
        )
        best, step_xs, step_ys = None, [], []
        for x, y in zip(xs, ys, strict=True):
            if best is None or better(y, best, metric):  # the frontier's corners only
                best = y
                step_xs.append(x)
                step_ys.append(best)
        step_xs.append(xs[-1])
        step_ys.append(best)
        ax.step(step_xs, step_ys, where="post", color=PALETTE[1], lw=1.4, label="best so far")
        marked = [(x, y) for x, (_, y, r) in zip(xs, scored, strict=True) if r.run_id in highlight]
        if marked:
            ax.scatter(
                [p[0] for p in marked],
                [p[1] for p in marked],
                s=60,
                facecolors="none",
                edgecolors=PALETTE[3],
                lw=1.6,
                zorder=4,
                label=marked_label,
            )
        ax.set_xlabel("run, in start order")
        # Run numbers are counts: no tick at 1.25.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, len(xs) + 0.5)
        ax.set_ylabel(label(metric))
        ax.set_title(f"{label(metric)} by run")
        ax.legend(loc="lower right")
        return fig, f"{metric} of each run in start order"


def cost_quality_figure(
    points: Sequence[tuple[RunRecord, float, float]],
    front: Sequence[str],
    metric: str,
    highlight: Collection[str] = frozenset(),
) -> tuple[Figure, str]:
    """Each run's rank metric against its estimated cost, the Pareto front joined and named.

    Args:
        points: (run, cost in USD, rank value) of the runs with both.
        front: Ids of the runs on the Pareto front, cheapest first (``reporting.cost``).
        metric: The rank metric (the y axis).
        highlight: Run ids circled as this run / this job's.
    """
    with matplotlib.rc_context(_RC):
        fig, (ax,) = _figure(9.6, 3.4, left=0.75)
        if not points:
            _empty(ax, "no ranked run logged its cost")
            return fig, f"{metric} against cost"
        many = len(points) > contract.REPORT_LISTED_RUNS
        ax.scatter(
            [p[1] for p in points],
            [p[2] for p in points],
            s=6 if many else 16,
            color=PALETTE[0],
            alpha=0.6,
            zorder=3,
            rasterized=many,
            label="run",
        )
        by_id = {p[0].run_id: p for p in points}
        edge = [by_id[i] for i in front if i in by_id]
        ax.plot(
            [p[1] for p in edge],
            [p[2] for p in edge],
            color=PALETTE[1],
            lw=1.4,
            marker="o",
            ms=6,
            zorder=4,
            drawstyle="steps-post",
            label="Pareto front (nothing cheaper is better)",
        )
        for run, x, y in edge[:8]:
            ax.annotate(short(run.name, 24), (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=7, color="#334155")  # fmt: skip
        marked = [p for p in points if p[0].run_id in highlight]
        if marked:
            ax.scatter([p[1] for p in marked], [p[2] for p in marked], s=70, facecolors="none",
                       edgecolors=PALETTE[3], lw=1.6, zorder=5, label="this job's")  # fmt: skip
        costs = [p[1] for p in points]
        if min(costs) > 0 and max(costs) / min(costs) > 30:
            ax.set_xscale("log")
        ax.set_xlabel("estimated cost (USD)")
        ax.set_ylabel(label(metric))
        ax.set_title(f"{label(metric)} against cost")
        ax.legend(loc="lower right")
        return fig, f"{metric} of each run against its estimated cost, with the Pareto front"


# --- The charts as inline SVG ------------------------------------------------------------


def _svg(build, *args: object, salt: int | None = None, **kwargs: object) -> str:
    """Build a figure (``*_figure``) and render it as inline SVG under the charts' style."""
    with matplotlib.rc_context(_RC):
        fig, label = build(*args, **kwargs)
        return to_svg(fig, label, salt)


def run_curves(run: RunRecord, salt: int | None = None) -> str:
    """:func:`run_curves_figure` as inline SVG."""
    return _svg(run_curves_figure, run, salt=salt)


# Per-run charts drawn in child processes from this many on (one chart ~0.25 s), with at most
# PARALLEL_CHARTS_PROCESSES of them, each answering within PARALLEL_CHARTS_TIMEOUT_S (plus
# PARALLEL_CHARTS_TIMEOUT_PER_S per chart) or the parent draws them all itself.
PARALLEL_CHARTS_MIN = 4
PARALLEL_CHARTS_PROCESSES = 2
PARALLEL_CHARTS_TIMEOUT_S = 30.0
PARALLEL_CHARTS_TIMEOUT_PER_S = 5.0


def _run_curves_or_error(run: RunRecord, salt: int) -> tuple[str, str]:
    """("svg", markup) or ("error", what went wrong): a child's answer, never an exception."""
    try:
        return "svg", run_curves(run, salt)
    except Exception as exc:  # noqa: BLE001 -- reported by the parent as that chart's error
        return "error", f"{type(exc).__name__}: {exc}"


def _chart_processes(n_runs: int) -> int:
    """How many child processes draw ``n_runs`` per-run charts; under 2 means none."""
    import multiprocessing
    import os

    if n_runs < PARALLEL_CHARTS_MIN:
        return 0
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return 0
    if not _main_is_importable():
        return 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return min(PARALLEL_CHARTS_PROCESSES, usable, n_runs)


def _main_is_importable() -> bool:
    """Whether a forkserver child can prepare ``__main__`` as the parent's was started.

    A child prepares the parent's ``__main__`` as ``multiprocessing.spawn``'s preparation
    data says: a module run with ``-m`` is imported by its name, a script is re-run from its
    path, and ``-c`` code or an interactive session (no ``__file__``) is not re-run at all. A
    script read from standard input (``__file__`` "<stdin>") has no path to re-run: every
    child dies at start-up and the pool starts new ones until the timeout, so its charts are
    drawn here.
    """
    import os
    import sys

    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True  # run with -m: the child imports it by name
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


def _chart_context():
    """The forkserver context the children come from, this module imported once in its server.

    Not a plain fork of the report's process: by then that process may hold threads that are
    not Python's (the HTTP client's, a test runner's, TensorFlow's or BLAS's pools), and a fork
    copies their locks but not the threads, so a child can wait forever on a lock nobody will
    release (the pool then hangs: a lost child's task is never answered). The forkserver is a
    fresh interpreter, single threaded, so its forks are safe; it is the default start method
    from Python 3.14 for this reason (https://docs.python.org/3/library/multiprocessing.html
    #contexts-and-start-methods, "Changed in version 3.14").
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def prepare_run_curves_many(n_runs: int) -> None:
    """Start the children's server now, for ``n_runs`` charts to come, if they will be drawn there.

    Its interpreter and the import of this module (~1 s) then overlap the caller's reading of
    the runs; without this, :func:`run_curves_many` starts it when first needed.
    """
    if _chart_processes(n_runs) >= 2:
        from multiprocessing import forkserver

        _chart_context()
        forkserver.ensure_running()


class RunCurvesDrawing:
    """Per-run charts being drawn (:func:`start_run_curves`); :meth:`result` collects them.

    The parent goes on with the rest of the report while the children draw (at 10,000 runs it
    waited ~2.8 s for them, idle, before drawing its own charts).
    """

    def __init__(self, runs: Sequence[RunRecord]) -> None:

        self.runs = list(runs)
        self.salts = [next(_ids) for _ in self.runs]
        self._pool: Any = None
        self._pending: Any = None
        self._done: list[tuple[str, str]] | None = None
        processes = _chart_processes(len(self.runs))
        self.timeout = PARALLEL_CHARTS_TIMEOUT_S + PARALLEL_CHARTS_TIMEOUT_PER_S * len(self.runs)
        if processes < 2:
            return
        try:
            self._pool = _chart_context().Pool(processes)
            self._pending = self._pool.starmap_async(
                _run_curves_or_error, zip(self.runs, self.salts, strict=True), chunksize=1
            )
        except (OSError, EOFError, RuntimeError) as exc:
            self._fell_back(exc)

    def _here(self) -> list[tuple[str, str]]:
        return [_run_curves_or_error(r, s) for r, s in zip(self.runs, self.salts, strict=True)]

    def _fell_back(self, exc: BaseException) -> None:
        # A child that died leaves its task unanswered (Pool would wait forever without the
        # timeout), and a server may fail to start: the charts are drawn here instead (in
        # result, once the children are gone), slower but never missing.
        logging.getLogger(__name__).warning(
            "per-run charts not drawn in child processes (%s: %s); drawing them here",
            type(exc).__name__,
            exc,
        )
        self.close()

    def result(self) -> list[tuple[str, str]]:
        """Every run's ("svg", markup) or ("error", message), in order (waits, or draws here)."""
        import multiprocessing

        if self._done is not None:
            return self._done
        if self._pending is not None:
            try:
                self._done = self._pending.get(self.timeout)
            except (multiprocessing.TimeoutError, OSError, EOFError, RuntimeError) as exc:
                self._fell_back(exc)
        self.close()
        if self._done is None:
            self._done = self._here()
        return self._done

    def close(self) -> None:
        """Ends the children (their unfinished charts are lost; :meth:`result` draws them)."""
        pool, self._pool, self._pending = self._pool, None, None
        if pool is not None:
            pool.terminate()
            pool.join()


def start_run_curves(runs: Sequence[RunRecord]) -> RunCurvesDrawing:
    """Starts drawing every run's :func:`run_curves`; ``.result()`` gives them, in order.

    The report's dozen per-run charts are most of its drawing time (matplotlib is single
    threaded: ~3 s of a 10,000-run report), so on a machine with more than one usable CPU they
    are drawn in child processes (see :func:`_chart_context`) while the caller goes on, each
    with the number it would have had on the page, so the SVGs are the same as drawn here one by
    one. For a few runs, with one CPU, or where the children fail to answer in time (killed, or
    a server that cannot start), they are drawn here when asked for.
    """
    return RunCurvesDrawing(runs)


def run_curves_many(runs: Sequence[RunRecord]) -> list[tuple[str, str]]:
    """Every run's :func:`run_curves`, as ("svg", markup) or ("error", message), in order."""
    return start_run_curves(runs).result()


def overlay_curves(
    runs: Sequence[RunRecord],
    keys: Sequence[str],
    named: int = len(PALETTE),
    title: str = "Training curves",
) -> str:
    """:func:`overlay_curves_figure` as inline SVG."""
    return _svg(overlay_curves_figure, runs, keys, named, title)


def recall_at_k(
    by_run: Sequence[aggregate.RecallSeries],
    by_config: Sequence[aggregate.RecallSeries],
    baselines: dict[str, list[float | None]],
) -> str:
    """:func:`recall_at_k_figure` as inline SVG."""
    return _svg(recall_at_k_figure, by_run, by_config, baselines)


def parallel_coordinates(runs: Sequence[RunRecord], params: Sequence[str], rank: RankMetric) -> str:
    """:func:`parallel_coordinates_figure` as inline SVG."""
    return _svg(parallel_coordinates_figure, runs, params, rank)


def metric_timeline(
    runs: Sequence[RunRecord],
    metric: str,
    highlight: Collection[str] = frozenset(),
    marked_label: str = "this pipeline's run",
) -> str:
    """:func:`metric_timeline_figure` as inline SVG."""
    return _svg(metric_timeline_figure, runs, metric, highlight, marked_label)


def cost_quality(
    points: Sequence[tuple[RunRecord, float, float]],
    front: Sequence[str],
    metric: str,
    highlight: Collection[str] = frozenset(),
) -> str:
    """:func:`cost_quality_figure` as inline SVG."""
    return _svg(cost_quality_figure, points, front, metric, highlight)
