"""write_report renders any experiment: one test per kind of bad or odd input.

Every store is real (SQLite, written with mlflow's client); nothing about MLflow is mocked.
"""

from __future__ import annotations

import html.parser
import math
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reporting import charts
from reporting.__main__ import main
from reporting.build import write_report
from tests.unit.reporting.mlflow_runs import log_run, standard_history
from trainer import contract

EXPERIMENT = "bad-input"
RLO = "\u202e"  # right-to-left override
ALL_PAGES = (*contract.VIEWS, contract.VIEW_COMBINED)
# The runs below log test recall only where they are odd: rank by it (asked for, not the default).
TEST_RECALL_100 = contract.test_recall_key(100)


def _page(result, view: str) -> str:
    return Path(result.pages[view]).read_text(encoding="utf-8")


def _experiment(tracking_uri: str) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri)
    return client, client.create_experiment(EXPERIMENT)


def _healthy(client: MlflowClient, eid: str, name: str, recall: float, start: int) -> str:
    return log_run(
        client, eid, name, test_recall={10: recall / 4, 50: recall / 2, 100: recall},
        history=standard_history(recall / 0.2), start_time=start,
    )  # fmt: skip


def test_non_finite_metric_values_are_shown_and_left_out(tracking_uri, tmp_path):
    client, eid = _experiment(tracking_uri)
    base = 1_700_000_000_000
    _healthy(client, eid, "good-a", 0.2, base)
    _healthy(client, eid, "good-b", 0.3, base + 1)
    for i, (name, value) in enumerate((("plus-inf", math.inf), ("minus-inf", -math.inf),
                                       ("nan", math.nan))):  # fmt: skip
        log_run(client, eid, name, test_recall={100: value}, start_time=base + 10 + i)
    # One history holding both infinities (and a NaN), next to finite epochs.
    both = log_run(client, eid, "both-infinities", test_recall={100: 0.1}, start_time=base + 20)
    for step, value in enumerate([2.0, math.inf, -math.inf, math.nan, 1.0]):
        client.log_metric(both, contract.METRIC_LOSS, value, step=step)
    result = write_report(
        tracking_uri, EXPERIMENT, str(tmp_path), detail_runs=0, rank_metric=TEST_RECALL_100
    )

    rows = _page(result, contract.VIEW_LEADERBOARD).split('<tr class="')
    shown = {
        n: re.search(r'class="num rank-metric"[^>]*>([^<]*)<', r)[1]
        for r in rows
        for n in ("plus-inf", "minus-inf", "nan", "good-b")
        if f"<bdi>{n}</bdi>" in r
    }
    assert shown == {"plus-inf": "inf", "minus-inf": "-inf", "nan": "NaN", "good-b": "0.3000"}
    ranked = [r for r in rows if 'class="num rankcol" data-v="' in r]
    assert len(ranked) == 3  # good-b, good-a, both-infinities; never the non-finite ones
    # Means are over finite values only: (0.2 + 0.3 + 0.1) / 3.
    assert re.search(r'id="stat-mean">0.2000<', _page(result, contract.VIEW_DASHBOARD))
    assert result.metrics["mean_test_recall_at_100"] == pytest.approx(0.2)
    curves = _page(result, contract.VIEW_TRAINING_CURVES)
    epochs = curves[curves.index("<bdi>both-infinities</bdi>") :]
    epochs = epochs[: epochs.index("</table>")]
    assert [c for c in re.findall(r">(inf|-inf|NaN)<", epochs)] == ["inf", "-inf", "NaN"]
    for view in ALL_PAGES:
        page = _page(result, view)
        assert "NaN, infinite or beyond" in page, view  # the note
        assert "Could not draw" not in page, view
    assert "NaN, infinite or beyond" in result.markdown


def test_huge_finite_values_do_not_break_the_charts(tracking_uri, tmp_path):
    # +-1e308 is finite but a chart's axis span overflows on it (the arange error of old).
    client, eid = _experiment(tracking_uri)
    _healthy(client, eid, "good", 0.2, 1)
    huge = log_run(client, eid, "huge", test_recall={100: 1e308}, start_time=2)
    for step, value in enumerate([1e308, -1e308, 0.5]):
        client.log_metric(huge, contract.METRIC_LOSS, value, step=step)
    result = write_report(tracking_uri, EXPERIMENT, str(tmp_path))
    for view in ALL_PAGES:
        assert "Could not draw" not in _page(result, view), view
    assert "1e+308" in _page(result, contract.VIEW_LEADERBOARD)


class _BidiCheck(html.parser.HTMLParser):
    """Text holding a bidi override outside <bdi> (attributes are not rendered as text)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.leaks: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.depth += tag == "bdi"

    def handle_endtag(self, tag):
        self.depth -= tag == "bdi"

    def handle_data(self, data):
        if RLO in data and not self.depth:
            self.leaks.append(data)


def test_right_to_left_overrides_are_isolated(tracking_uri, tmp_path):
    client, eid = _experiment(tracking_uri)
    evil = f"run{RLO}gnp.exe"
    log_run(
        client, eid, evil, fc=f"fc{RLO}x", test_recall={100: 0.2},
        history=standard_history(1.0), params={"note": f"a{RLO}b"},
        tags={contract.TAG_PIPELINE_JOB: f"job{RLO}"},
    )  # fmt: skip
    log_run(
        client, eid, "failed", status=contract.STATUS_FAILED,
        tags={contract.TAG_FAILURE_REASON: f"because{RLO}esuaceb"},
    )  # fmt: skip
    result = write_report(
        tracking_uri, EXPERIMENT, str(tmp_path), highlight_pipeline_job=f"job{RLO}"
    )
    for view in ALL_PAGES:
        page = _page(result, view)
        check = _BidiCheck()
        check.feed(page)
        assert check.leaks == [], view
        assert RLO not in "".join(re.findall(r"<svg.*?</svg>", page, re.DOTALL)), view
    assert f"<bdi>{evil}</bdi>" in _page(result, contract.VIEW_LEADERBOARD)
    # Markdown has no <bdi>: first-strong isolate ... pop directional isolate around each.
    assert f"\u2068{evil}\u2069" in result.markdown


def test_huge_names_and_params_are_shortened(tracking_uri, tmp_path):
    client, eid = _experiment(tracking_uri)
    base_dir = tmp_path / "base"
    _healthy(client, eid, "small", 0.2, 1)
    baseline = write_report(tracking_uri, EXPERIMENT, str(base_dir))
    big = "N" * 100_000
    for i in range(3):
        log_run(
            client, eid, f"{i}{big}", fc=f"{i}{big}", test_recall={100: 0.1 + i / 100},
            history=standard_history(1.0), params={"blob": f"{i}{big}"},
            tags={contract.TAG_FAILURE_REASON: big}, status=contract.STATUS_FAILED,
        )  # fmt: skip
    result = write_report(tracking_uri, EXPERIMENT, str(tmp_path / "big"), detail_runs=0)
    for view in ALL_PAGES:
        size = len(_page(result, view).encode())
        before = len(_page(baseline, view).encode())
        # Three 100 KB strings in names, configs, params and reasons: well under 300 KB more
        # (it was 1.5 MB), because each shows 200 characters and a 1,000-character title.
        assert size < before + 250_000, (view, size)
        # MLflow keeps run names and params whole, and cuts tag values (the configs) itself.
        if view != contract.VIEW_RECALL_AT_K:  # only charts there, with 36-character labels
            assert re.search(r"\(\d{1,3}(,\d{3})* characters\)", _page(result, view)), view
    assert "(100,001 characters)" in _page(result, contract.VIEW_LEADERBOARD)
    assert max(len(line) for line in result.markdown.splitlines()) < 2_000


def test_link_targets_are_escaped_in_html_and_markdown(tracking_uri, tmp_path, capsys):
    client, eid = _experiment(tracking_uri)
    _healthy(client, eid, "a", 0.2, 1)
    ui = 'https://mlflow.example.com/x y)"<b>(z'
    rc = main(
        ["--tracking-uri", tracking_uri, "--experiment", EXPERIMENT, "--out", str(tmp_path),
         "--ui-url", ui]
    )  # fmt: skip
    assert rc == 0
    md = (tmp_path / contract.SUMMARY_FILE).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)]*)\)", md)
    assert targets and all(t.startswith("https://mlflow.example.com/x%20y%29%22%3Cb%3E%28z/#/")
                           for t in targets)  # fmt: skip
    assert "<b>" not in md and "<b>" not in capsys.readouterr().out
    page = (tmp_path / "leaderboard.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all(h.startswith("https://mlflow.example.com/x%20y%29%22%3Cb%3E%28z/")
                         for h in hrefs)  # fmt: skip


def test_one_bad_run_never_stops_the_others_pages(tracking_uri, tmp_path, monkeypatch):
    # Drawn here, where the patched chart function is the one called (a chart that fails in a
    # child process comes back the same way: test_charts).
    client, eid = _experiment(tracking_uri)
    fine = 2
    names = ["fine-1", "broken", *(f"fine-{i}" for i in range(2, fine + 1))]
    for i, name in enumerate(names):
        _healthy(client, eid, name, 0.2 + i / 100, i)
    draw = charts.run_curves

    def fails_on_one_run(run, salt=None):
        if run.name == "broken":
            raise ValueError("a chart that cannot be drawn")
        return draw(run, salt)

    # Our own chart function fails for one run (MLflow stays real): its page section says so.
    monkeypatch.setattr(charts, "run_curves", fails_on_one_run)
    result = write_report(tracking_uri, EXPERIMENT, str(tmp_path))
    page = _page(result, contract.VIEW_TRAINING_CURVES)
    assert page.count("Could not draw") == 1
    assert "Could not draw the curves of run &#39;broken&#39;: ValueError" in page
    assert page.count('aria-label="Training curves of run fine-') == fine
    assert len(names) < charts.PARALLEL_CHARTS_MIN
    for view in ALL_PAGES:
        if view not in (contract.VIEW_HEATMAP, contract.VIEW_RECALL_AT_K):  # no names there
            assert f"<bdi>{names[-1]}</bdi>" in _page(result, view), view  # the leader
