"""Each chart on real RunRecords (read from the standard sweep): valid SVG, series, labels."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reporting import aggregate, charts, query
from reporting.metric import RankMetric
from reporting.records import RunRecord
from tests.unit.reporting.mlflow_runs import EVIL, EXPERIMENT
from trainer import contract

REPO_ROOT = Path(__file__).resolve().parents[3]

_SVG = "{http://www.w3.org/2000/svg}"
RANKED = ["hist-small", "ids-large", "ids-small-s3", "ids-small-s2", "ids-small-s1"]


@pytest.fixture(scope="module")
def runs(sweep_store) -> dict[str, RunRecord]:
    """The sweep's runs by name, every history fetched."""
    data = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT)
    return {("evil" if r.name == EVIL else r.name): r for r in data.runs}


def _parse(svg: str) -> ET.Element:
    """The chart as XML; fails on anything that is not well-formed SVG."""
    root = ET.fromstring(svg)
    assert root.tag == f"{_SVG}svg"
    assert root.get("class") == "chart" and root.get("role") == "img" and root.get("aria-label")
    return root


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{_SVG}text")]


def _legend(root: ET.Element) -> list[str]:
    """Texts of every legend (entries and legend titles), in drawing order."""
    return [
        t.text or ""
        for g in root.iter(f"{_SVG}g")
        if g.get("id", "").startswith("legend_")
        for t in g.iter(f"{_SVG}text")
    ]


def _series(root: ET.Element, colors: list[str]) -> int:
    """Data lines drawn in ``colors``: clipped to the axes, unlike legend handles and ticks."""
    return sum(
        1
        for p in root.iter(f"{_SVG}path")
        if p.get("clip-path") and any(f"stroke: {c}" in p.get("style", "") for c in colors)
    )


def test_run_curves_draw_losses_and_recall_per_k(runs):
    root = _parse(charts.run_curves(runs["hist-small"]))
    assert _series(root, charts.PALETTE) == 2 + len(contract.RECALL_KS)
    assert _legend(root) == ["k", "@10", "@50", "@100"]
    assert {"Training loss", "Validation loss", "Validation recall@k"} <= set(_texts(root))


def test_run_curves_without_history_say_so(runs):
    root = _parse(charts.run_curves(runs["failed"]))
    assert _series(root, charts.PALETTE) == 0
    assert {"no loss history", "no recall history"} <= set(_texts(root))


def test_overlay_curves_name_the_first_runs_and_grey_the_rest(runs):
    ordered = [runs[n] for n in RANKED] + [runs["evil"]]
    keys = [contract.METRIC_LOSS, contract.val_recall_key(100)]
    root = _parse(charts.overlay_curves(ordered, keys, named=2, title="All runs"))
    assert root.get("aria-label") == "All runs"
    # Two named runs in each of the two panels; the other four only in grey.
    assert _series(root, charts.PALETTE) == 4
    assert _legend(root) == ["Runs (+4 more in grey)", "hist-small", "ids-large"]
    assert charts.MUTED in charts.overlay_curves(ordered, keys, named=2)
    assert {"Loss", "Val recall@100"} <= set(_texts(root))


def test_overlay_curves_without_history_say_so_per_panel(runs):
    root = _parse(charts.overlay_curves([runs["failed"]], [contract.METRIC_LOSS, "val_loss"]))
    assert {"no loss history", "no val_loss history"} <= set(_texts(root))
    assert _legend(root) == []


def test_recall_at_k_draws_runs_configs_and_baselines(runs):
    ordered = [runs[n] for n in RANKED] + [runs["evil"]]
    by_run = aggregate.recall_by_run(ordered)
    by_config = aggregate.recall_by_config(ordered)
    baselines = aggregate.baseline_means(ordered)
    root = _parse(charts.recall_at_k(by_run, by_config, baselines))
    assert len(by_run) == 6 and len(by_config) == 1
    # Six runs in the left panel; one config in the right one: its line and an error bar per k.
    assert _series(root, charts.PALETTE) == 6 + 1 + len(contract.RECALL_KS)
    # Both baselines, dashed, in both panels.
    assert _series(root, ["#0f172a"]) == 2 * 2
    legend = _legend(root)
    assert legend.count("baseline: own_history") == legend.count("baseline: popular") == 2
    assert "fc_ids \u00d7 mc_small (n=3)" in legend
    assert [n for n in legend if n in RANKED] == RANKED
    assert any(n.startswith("<script>alert(") and n.endswith("\u2026") for n in legend)


def test_recall_at_k_without_recall_says_so():
    root = _parse(charts.recall_at_k([], [], {}))
    assert _texts(root).count("no test recall logged") == 2
    assert _series(root, charts.PALETTE) == 0


def test_parallel_coordinates_one_line_per_scored_run(runs):
    ordered = [runs[n] for n in RANKED] + [runs["failed"]]
    params = aggregate.varying_params(ordered)
    svg = charts.parallel_coordinates(ordered, params, RankMetric.of("test_recall_at_100"))
    root = _parse(svg)
    texts = _texts(root)
    # The failed run logged no test recall: five lines, not six.
    assert "Params against Test recall@100 (5 runs)" in texts
    assert [contract.PARAM_FEATURE_CONFIG_ID, contract.PARAM_MODEL_CONFIG_ID] == params[:2]
    assert {"fc_history", "fc_ids", "mc_large", "mc_small"} <= set(texts)
    assert "Test recall@100" in texts  # the metric's own axis
    # Numbered, short axis titles (the page lists the full names).
    assert any(t.startswith("1. feature_conf") for t in texts)
    assert any(t.startswith("2. model_conf") for t in texts)


def test_parallel_coordinates_without_varying_params_say_so(runs):
    root = _parse(charts.parallel_coordinates([runs["hist-small"]], [], RankMetric.of("loss")))
    assert "needs runs with the metric and at least one param that varies" in _texts(root)


def test_metric_timeline_marks_best_so_far_and_this_run(runs):
    ordered = list(runs.values())
    svg = charts.metric_timeline(ordered, "test_recall_at_100", {runs["ids-large"].run_id})
    root = _parse(svg)
    assert _legend(root) == ["best so far", "this pipeline's run"]
    assert "Test recall@100 by run" in _texts(root)
    plain = _parse(charts.metric_timeline(ordered, "test_recall_at_100"))
    assert _legend(plain) == ["best so far"]


def test_metric_timeline_without_the_metric_says_so(runs):
    root = _parse(charts.metric_timeline(list(runs.values()), "nope"))
    assert "no run logged nope" in _texts(root)


def test_short_keeps_short_labels_and_ellipsises_long_ones():
    assert charts.short("a" * charts.LABEL_MAX) == "a" * charts.LABEL_MAX
    long = charts.short("b" * 50, 10)
    assert long == "b" * 9 + "\u2026" and len(long) == 10


def test_per_run_charts_drawn_in_children_are_the_ones_drawn_here(runs, monkeypatch):
    import itertools

    ordered = [runs[name] for name in RANKED]
    monkeypatch.setattr(charts, "_ids", itertools.count(100))
    forked = charts.run_curves_many(ordered)
    monkeypatch.setattr(charts, "_ids", itertools.count(100))
    monkeypatch.setattr(charts, "PARALLEL_CHARTS_MIN", len(ordered) + 1)  # all drawn here
    here = charts.run_curves_many(ordered)
    assert [kind for kind, _ in forked] == ["svg"] * len(ordered)
    assert forked == here  # the same bytes, each with its own salt
    salts = [svg.split("clip", 2)[1][:40] for _, svg in forked]
    assert len(set(salts)) == len(salts)
    assert [_parse(svg).get("aria-label") for _, svg in forked] == [
        f"Training curves of run {name}" for name in RANKED
    ]


def test_a_chart_that_fails_in_a_child_is_that_runs_error_and_the_others_are_drawn(runs):
    import dataclasses

    ordered = [runs[name] for name in RANKED]
    # A history point that is not (step, value): the child's own drawing code raises on it.
    broken = dataclasses.replace(ordered[1], history={contract.METRIC_LOSS: [(0, 1.0, 2.0)]})
    drawn = charts.run_curves_many([ordered[0], broken, *ordered[2:]])
    assert len(drawn) >= charts.PARALLEL_CHARTS_MIN and charts._chart_processes(len(drawn)) == 2
    assert drawn[1] == ("error", "ValueError: too many values to unpack (expected 2)")
    assert [kind for kind, _ in drawn] == ["svg", "error", *["svg"] * (len(ordered) - 2)]


def test_children_that_do_not_answer_in_time_leave_the_charts_drawn_here(runs, monkeypatch, caplog):
    import itertools

    ordered = [runs[name] for name in RANKED]
    monkeypatch.setattr(charts, "_ids", itertools.count(7))
    here = [("svg", charts.run_curves(run, 7 + i)) for i, run in enumerate(ordered)]
    monkeypatch.setattr(charts, "_ids", itertools.count(7))
    monkeypatch.setattr(charts, "PARALLEL_CHARTS_TIMEOUT_S", 0.0)
    monkeypatch.setattr(charts, "PARALLEL_CHARTS_TIMEOUT_PER_S", 0.0)
    with caplog.at_level("WARNING", logger=charts.__name__):
        drawn = charts.run_curves_many(ordered)
    assert drawn == here  # every chart, the same bytes
    assert "not drawn in child processes (TimeoutError" in caplog.text


def test_a_report_from_a_script_read_on_stdin_draws_its_charts_here(tmp_path):
    # Children of the forkserver re-run the parent's main script by its path; "<stdin>" has
    # none, so they would die at start-up until the timeout (30 s + 5 s a chart).
    import subprocess
    import sys

    script = (
        "import sys, logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from reporting import charts\n"
        "from tests.unit.reporting.test_charts import curve_runs\n"
        "print('processes', charts._chart_processes(8))\n"
        "drawn = charts.run_curves_many(curve_runs(8))\n"
        "print('kinds', sorted({kind for kind, _ in drawn}), len(drawn))\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=25,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes 0" in done.stdout and "kinds ['svg'] 8" in done.stdout, done.stdout
    assert "not drawn in child processes" not in done.stderr, done.stderr[-3000:]


def curve_runs(n: int) -> list[RunRecord]:
    """``n`` runs with a loss and a validation-loss history, made without a store."""
    return [
        RunRecord(
            run_id=f"{i:032x}",
            name=f"run-{i}",
            status="FINISHED",
            start_time=0,
            end_time=1,
            params={},
            tags={},
            metrics={contract.METRIC_LOSS: 1.0 / (i + 1)},
            metric_steps={contract.METRIC_LOSS: 3},
            history={
                contract.METRIC_LOSS: [(s, 1.0 / (s + i + 1)) for s in range(1, 4)],
                contract.METRIC_VAL_LOSS: [(s, 1.2 / (s + i + 1)) for s in range(1, 4)],
            },
            logged_history=(contract.METRIC_LOSS, contract.METRIC_VAL_LOSS),
        )  # fmt: skip
        for i in range(n)
    ]
