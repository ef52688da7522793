"""Every chart on real stores (1, 3 and 50 runs, long names): no text over text, none cut off.

Text extents come from matplotlib itself: each text artist that is really drawn (tick labels
outside the view are not) is measured with the renderer that drew it.
"""

from __future__ import annotations

import itertools

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from mlflow.tracking import MlflowClient

from reporting import aggregate, charts, query
from reporting.metric import RankMetric
from tests.unit.reporting.mlflow_runs import log_run, standard_history
from trainer import contract

LONG = "feature-config-with-buyer-history-cross-with-country-and-recency-buckets"
RANK = RankMetric.of(contract.DEFAULT_RANK_METRIC)


def _log(uri: str, experiment: str, n: int, long_names: bool) -> list:
    client = MlflowClient(uri)
    eid = client.create_experiment(experiment)
    for i in range(n):
        name = f"{LONG}-{i}" if long_names else f"run-{i}"
        fc = f"{LONG}-{i % 3}" if long_names else f"fc_{i % 3}"
        mc = f"model-config-two-tower-{i % 2}" if long_names else f"mc_{i % 2}"
        r100 = 0.1 + 0.005 * i
        hist = standard_history(r100 / 0.2)
        # Validation loss sums over more candidates: an order of magnitude above the loss.
        hist[contract.METRIC_VAL_LOSS] = [v * 20 for v in hist[contract.METRIC_VAL_LOSS]]
        params = {
            contract.PARAM_LEARNING_RATE: str([0.05, 0.1, 0.2][i % 3]),
            contract.PARAM_EMBEDDING_DIM: str([32, 64, 128][i % 3]),
            contract.PARAM_SEED: str(i % 4),
            "feature.buyer.history.cross_with": f"country_{i % 4}" + ("_x" * 12 * long_names),
            "model.tower.layers": ["[64]", "[256, 64]", "[512, 256, 64]"][i % 3],
            "model.temperature": str(0.05 * (1 + i % 5)),
            "training.schedule.warmup_epochs": str(i % 6),
            "feature.product.text.tokens": str(1000 * (1 + i % 7)),
            "constant.everywhere": "same",
        }
        log_run(
            client, eid, name, fc=fc, mc=mc, start_time=1_700_000_000_000 + i,
            test_recall={10: r100 / 4, 50: r100 / 1.6, 100: r100},
            baselines={contract.BASELINE_POPULAR: {10: 0.05, 50: 0.1, 100: 0.16}},
            history=hist, params=params,
        )  # fmt: skip
    data = query.load_experiment(uri, experiment)
    return sorted(data.runs, key=lambda r: -r.metrics[contract.DEFAULT_RANK_METRIC])


@pytest.fixture(scope="module")
def run_sets(_empty_store, tmp_path_factory) -> dict[str, list]:
    import shutil

    path = tmp_path_factory.mktemp("layout") / "mlflow.db"
    shutil.copy(_empty_store, path)
    uri = f"sqlite:///{path}"
    return {
        "1 run": _log(uri, "one", 1, False),
        "3 runs": _log(uri, "three", 3, False),
        "50 runs": _log(uri, "fifty", 50, False),
        "long names": _log(uri, "long", 12, True),
    }


def _figures(runs: list) -> dict[str, tuple]:
    """Every chart the report draws, as built for these runs."""
    keys = [contract.METRIC_LOSS, contract.METRIC_VAL_LOSS, contract.val_recall_key(100)]
    marked = {runs[0].run_id}
    return {
        "run curves": charts.run_curves_figure(runs[0]),
        "overview curves": charts.overlay_curves_figure(runs, keys, title="All runs"),
        "compared curves": charts.overlay_curves_figure(runs[:5], keys[1:]),
        "recall at k": charts.recall_at_k_figure(
            aggregate.recall_by_run(runs, marked)[: len(charts.PALETTE)],
            aggregate.recall_by_config(runs)[: len(charts.PALETTE)],
            aggregate.baseline_means(runs),
        ),
        "parallel coordinates": charts.parallel_coordinates_figure(
            runs, aggregate.varying_params(runs), RANK
        ),
        "timeline": charts.metric_timeline_figure(
            runs, contract.DEFAULT_RANK_METRIC, marked, "this pipeline job's runs"
        ),
    }


def _drawn_texts(fig, monkeypatch) -> list[tuple[str, object]]:
    """(text, window extent) of every text artist drawn, measured by its own renderer."""
    drawn: list[Text] = []
    draw = Text.draw

    def spy(self, renderer):
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    with monkeypatch.context() as m, matplotlib.rc_context(charts._RC):
        m.setattr(Text, "draw", spy)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn]


def _problems(fig, monkeypatch) -> list[str]:
    texts = _drawn_texts(fig, monkeypatch)
    page = fig.bbox
    out = []
    for text, box in texts:
        if (
            box.x0 < page.x0 - 1
            or box.y0 < page.y0 - 1
            or box.x1 > page.x1 + 1
            or (box.y1 > page.y1 + 1)
        ):
            out.append(f"cut off: {text!r}")
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        # A pixel of slack: glyph boxes of neighbouring lines may touch.
        if (
            box_a.x0 < box_b.x1 - 1
            and box_b.x0 < box_a.x1 - 1
            and box_a.y0 < box_b.y1 - 1
            and box_b.y0 < box_a.y1 - 1
        ):
            out.append(f"overlap: {a!r} / {b!r}")
    return out


@pytest.mark.parametrize("runs_name", ["1 run", "3 runs", "50 runs", "long names"])
def test_no_text_over_text_and_none_cut_off(run_sets, runs_name, monkeypatch):
    problems = {}
    for chart, (fig, _label) in _figures(run_sets[runs_name]).items():
        found = _problems(fig, monkeypatch)
        if found:
            problems[chart] = found
    assert problems == {}


def test_the_check_sees_overlaps_and_cut_text(monkeypatch):
    fig, (ax,) = charts._figure(4, 2)
    ax.text(0.5, 0.5, "one", transform=ax.transAxes)
    ax.text(0.5, 0.5, "two", transform=ax.transAxes)
    ax.text(1.3, 0.5, "far too far right", transform=ax.transAxes)
    found = _problems(fig, monkeypatch)
    assert "overlap: 'one' / 'two'" in found and "cut off: 'far too far right'" in found


@pytest.mark.parametrize("runs_name", ["1 run", "3 runs", "50 runs"])
def test_run_numbers_and_epochs_get_integer_ticks(run_sets, runs_name):
    runs = run_sets[runs_name]
    figures = _figures(runs)
    for chart in ("timeline", "run curves", "overview curves"):
        fig, _ = figures[chart]
        for ax in fig.axes:
            if not ax.get_xlabel():
                continue
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), (chart, ticks)


def test_loss_and_val_loss_have_their_own_axes(run_sets):
    fig, _ = charts.run_curves_figure(run_sets["3 runs"][0])
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["Training loss", "Validation loss", "Validation recall@k"]
    loss_ax, val_ax = fig.axes[:2]
    # val_loss is 20x the loss here: each fills its own axes instead of one flat line.
    assert val_ax.get_ylim()[0] > loss_ax.get_ylim()[1]


def test_parallel_coordinates_keep_to_a_few_short_axes(run_sets):
    runs = run_sets["long names"]
    params = aggregate.varying_params(runs, charts.PARALLEL_AXES)
    assert "constant.everywhere" not in params and contract.PARAM_SEED not in params
    fig, _ = charts.parallel_coordinates_figure(runs, [*params, "extra.a", "extra.b"], RANK)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == charts.PARALLEL_AXES + 1
    assert all(len(t) <= charts.PARALLEL_LABEL for t in labels)
    assert "5. cross_with" in labels[4] or any(t.endswith("cross_with") for t in labels)
