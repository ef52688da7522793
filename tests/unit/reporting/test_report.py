"""The written report, end to end on a real SQLite store: values, order, marks, escaping."""

from __future__ import annotations

import html
import html.parser
import re
import socket
from pathlib import Path

import pytest

from reporting.build import ReportUnreachableError, write_report
from reporting.summary import md_escape
from trainer import contract
from trainer.contract import VIEW_COMBINED, VIEW_TITLES, VIEWS
from trainer.tracking import TrackingUri

EXPERIMENT = "reporting-test"


class _Scripts(html.parser.HTMLParser):
    """Collects <script> elements and every attribute of every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.in_script = False
        self.attrs: list[tuple[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "script":
            self.in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.scripts[-1] += data


def _page(result, view: str) -> str:
    return Path(result.pages[view]).read_text(encoding="utf-8")


def _rows(page: str, table_id: str) -> list[str]:
    table = page[page.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    return re.findall(r"<tr\b.*?</tr>", table, flags=re.DOTALL)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip())


def test_every_view_is_written_with_its_display_name(sweep_report):
    assert set(sweep_report.pages) == {*VIEWS, VIEW_COMBINED}
    assert sweep_report.display_names == VIEW_TITLES
    for view, path in sweep_report.pages.items():
        page = Path(path).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        assert Path(path).name == f"{view}.html"
        assert f"<h1>{VIEW_TITLES[view]}</h1>" in page
        # Self-contained: no external resource of any kind.
        assert not re.search(r'<(link|img|iframe)\b|\bsrc="|@import|https?://cdn', page), view
    assert sweep_report.run_count == 8
    assert sweep_report.reachable is True


def test_combined_page_holds_every_view(sweep_report):
    page = _page(sweep_report, VIEW_COMBINED)
    for view in VIEWS:
        assert f'<section class="view" id="{view}">' in page
        assert f'href="#{view}"' in page


def test_leaderboard_ranks_by_metric_with_unranked_runs_last(sweep_report, sweep_store):
    rows = _rows(_page(sweep_report, "leaderboard"), "leaderboard-table")[1:]
    ids = [re.search(r'data-run-id="([0-9a-f]+)"', r).group(1) for r in rows]
    by_id = {v: k for k, v in sweep_store.ids.items()}
    names = [by_id[i] for i in ids]
    assert names[:6] == [
        "hist-small",
        "ids-large",
        "ids-small-s3",
        "ids-small-s2",
        "ids-small-s1",
        "evil",
    ]
    assert set(names[6:]) == {"failed", "running"}
    top = _text(rows[0])
    # rank, value (best val recall@100), test recall@10/50/100 beside it, best/last epoch of
    # val recall@100, lifts over both baselines; the sweep's runs logged no interval and, trained
    # before costs were logged, no cost
    assert top.startswith(
        "1 hist-small finished fc_history mc_small 0.2560 no interval 0.0800 0.2000 0.3200 "
        "no cost 2 "
        "0.2560 0.2560"
    )
    assert "+100.0% +6.7%" in top
    assert _text(rows[6]).startswith("\u2014")


def test_leaderboard_links_runs_and_highlights_this_run(sweep_report, sweep_store):
    page = _page(sweep_report, "leaderboard")
    rid = sweep_store.ids["ids-large"]
    assert (
        f'href="https://mlflow.example.com/#/experiments/{sweep_store.experiment_id}/runs/{rid}"'
        in page
    )
    highlighted = [r for r in _rows(page, "leaderboard-table") if 'class="highlight"' in r]
    assert len(highlighted) == 1 and rid in highlighted[0] and "this run" in highlighted[0]


def test_links_to_mlflow_open_outside_the_consoles_frame(sweep_report):
    # The Vertex console shows a view in a side-panel frame: a link that replaced the frame
    # would lose the console; every MLflow link opens a new tab, without an opener.
    for view in VIEWS:
        links = re.findall(r"<a\s[^>]*href=\"https?://[^>]*>", _page(sweep_report, view))
        assert all('target="_blank"' in a and 'rel="noopener noreferrer"' in a for a in links)
    assert re.findall(r"<a\s[^>]*href=\"https://mlflow", _page(sweep_report, "leaderboard"))


def test_leaderboard_is_sortable_without_breaking_no_js(sweep_report):
    page = _page(sweep_report, "leaderboard")
    assert 'class="data sortable" id="leaderboard-table"' in page
    assert page.count('data-sort="num"') >= 8
    # Numeric cells carry a raw sort key next to the formatted value.
    assert 'data-v="0.32"' in page


def test_lower_is_better_metric_ranks_ascending(sweep_store, tmp_path):
    result = write_report(
        sweep_store.tracking_uri, EXPERIMENT, str(tmp_path), rank_metric="final_val_loss"
    )
    rows = _rows(_page(result, "leaderboard"), "leaderboard-table")[1:]
    assert "hist-small" in rows[0]  # steepest val_loss drop -> lowest final val_loss
    assert "ids-small-s1" in rows[4]
    assert "(lower is better;" in _page(result, "leaderboard")
    assert result.metrics["best_run_final_val_loss"] == pytest.approx(3.2 - 2 * 0.08 * 1.6)


def test_dashboard_counts_and_best(sweep_report):
    page = _page(sweep_report, "dashboard")
    assert re.search(r'id="stat-total">8<', page)
    assert re.search(r'id="stat-finished">6<', page)
    assert re.search(r'id="stat-failed">1<', page)
    assert re.search(r'id="stat-best">0.3200<', page)
    # mean over the 6 runs with test recall@100: (.2+.22+.24+.26+.32+.03)/6
    assert re.search(r'id="stat-mean">0.2117<', page)
    assert "1 still running" in page
    assert "Best run by <bdi>Best val recall@100</bdi>" in page and "hist-small" in page
    assert "Best run's Test recall@100" in page  # the chosen run's test value, beside
    latest = _rows(page, "latest-table")[1:]
    assert "evil" not in latest[0] and "alert" in latest[0]  # newest first
    assert "running" in latest[1] and "no history" in latest[1]


def test_comparison_top_n_highlights_best_per_row(sweep_report):
    page = _page(sweep_report, "comparison")
    rows = {
        re.search(r'data-key="([^"]+)"', r).group(1): r for r in _rows(page, "compare-metrics")[1:]
    }
    head = _rows(page, "compare-metrics")[0]
    assert [
        n
        for n in ("hist-small", "ids-large", "ids-small-s3", "ids-small-s2", "ids-small-s1")
        if n in head
    ]
    assert head.index("hist-small") < head.index("ids-large") < head.index("ids-small-s1")

    def best_cells(row: str) -> list[int]:
        cells = re.findall(r"<td[^>]*>", row)
        return [i for i, c in enumerate(cells) if " best" in c]

    assert best_cells(rows["test_recall_at_100"]) == [0]
    # Lower is better for losses: hist-small's loss fell furthest.
    assert best_cells(rows["final_loss"]) == [0]
    assert "lower is better" in rows["final_loss"]
    # Every run logged the same baselines: a tie is no contest.
    assert best_cells(rows["baseline_popular_recall_at_100"]) == []


def test_comparison_params_have_a_differences_only_view(sweep_report):
    page = _page(sweep_report, "comparison")
    rows = {
        re.search(r'data-key="([^"]+)"', r).group(1): r for r in _rows(page, "compare-params")[1:]
    }
    assert 'class="differs"' in rows[contract.PARAM_SEED]
    assert 'class="differs"' in rows["tower.layers"]
    assert 'class="same"' in rows[contract.PARAM_BATCH_SIZE]
    # The toggle works without JavaScript: a checkbox and a sibling selector.
    assert '<input type="checkbox" id="compare-diff-only" class="diff-toggle">' in page
    assert ".diff-toggle:checked ~ .table-wrap tr.same { display: none; }" in page
    assert "<svg" in page[page.index("<h3>Training curves</h3>") :]


def test_comparison_by_run_ids_keeps_order_and_reports_missing(sweep_store, tmp_path):
    ids = sweep_store.ids
    result = write_report(
        sweep_store.tracking_uri,
        EXPERIMENT,
        str(tmp_path),
        compare_run_ids=[ids["ids-small-s1"], ids["failed"], "deadbeef"],
    )
    page = _page(result, "comparison")
    head = _rows(page, "compare-metrics")[0]
    assert head.index("ids-small-s1") < head.index("failed")
    assert "hist-small" not in head
    assert "not found: deadbeef" in page


def test_training_curves_have_epoch_tables_and_no_history_runs(sweep_report, sweep_store):
    page = _page(sweep_report, "training_curves")
    rid = sweep_store.ids["hist-small"]
    section = page[page.index(f'id="curves-{rid}"') :]
    section = section[: section.index("</details>")]
    assert "<svg" in section
    epochs = re.findall(r"<tr\b.*?</tr>", section[section.index("<table") :], flags=re.DOTALL)
    assert len(epochs) == 4  # header + 3 epochs
    assert _text(epochs[3]).startswith("2 best 2.6800 2.9440 0.0640 0.1600 0.2560")
    none = _rows(page, "no-history")
    assert {n for n in ("failed", "running") if any(n in r for r in none)} == {"failed", "running"}
    assert all("no history logged" in r for r in none[1:])
    assert "6 of 8 runs logged a history" in page


def test_heatmap_mean_std_n_and_empty_cells(sweep_report, fx):
    page = _page(sweep_report, "heatmap")
    rows = _rows(page, "heatmap-table")
    header = _text(rows[0])
    assert header.endswith("mc_large mc_small")
    by_fc = {
        _text(re.search(r'<th class="rowh">(.*?)</th>', r, re.DOTALL).group(1)): r for r in rows[1:]
    }
    assert set(by_fc) == {"fc_history", "fc_ids", " ".join(fx.EVIL.split())}
    ids_cells = re.findall(r"<td class=\"cell.*?</td>", by_fc["fc_ids"], flags=re.DOTALL)
    # best val recall@100: 0.26 / 0.2 x 0.16 for ids-large; seeds 0.160, 0.176, 0.192
    assert _text(ids_cells[0]) == "0.208 ± \u2014 · n=1"
    # Three seeds, no run with an interval: t(2) x sd 0.016 / sqrt(3), the seeds only.
    assert _text(ids_cells[1]) == "0.176 ± 0.040 seeds only · n=3"
    hist_cells = re.findall(r"<td class=\"cell.*?</td>", by_fc["fc_history"], flags=re.DOTALL)
    assert 'class="cell empty"' in hist_cells[0] and _text(hist_cells[0]) == ""
    assert "bestcell" in hist_cells[1]  # 0.32 is the best mean


def test_recall_at_k_groups_seeds_and_draws_parallel_coordinates(sweep_report):
    page = _page(sweep_report, "recall_at_k")
    rows = _rows(page, "recall-by-config")
    seeded = [r for r in rows if "fc_ids × mc_small" in r]
    assert len(seeded) == 1
    assert _text(seeded[0]).startswith(
        "fc_ids × mc_small 3 0.0550 0.0050 0.1375 0.0125 0.2200 0.0200"
    )
    assert any("baseline: popular" in r for r in rows)
    assert page.count("<svg") == 2
    assert "Params against Best val recall@100" in page


def test_everything_from_mlflow_is_escaped(sweep_report, fx):
    for view, path in sweep_report.pages.items():
        page = Path(path).read_text(encoding="utf-8")
        parser = _Scripts()
        parser.feed(page)
        # The page's own sorting script is the only script, and it is not MLflow's.
        assert len(parser.scripts) == 1, view
        assert "alert" not in parser.scripts[0] and "k(" not in parser.scripts[0]
        assert "<script>alert" not in page and "<script>k(" not in page
        for name, value in parser.attrs:
            assert not name.startswith("on"), (view, name, value)
    lb = _page(sweep_report, "leaderboard")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &#39;q&#39; $a_b$ üñîçødé ☃" in lb
    comparison_or_curves = _page(sweep_report, VIEW_COMBINED)
    # Hostile param key and value, metric keys (history and summary) and tag-derived names.
    assert "&lt;script&gt;k(&#34;1&#34;)&lt;/script&gt;ü&#39;h" in comparison_or_curves
    # Inside SVG text, matplotlib escapes too, and "$...$" stays literal (no mathtext).
    svg_texts = re.findall(r"<text[^>]*>([^<]*)</text>", comparison_or_curves)
    assert any("&lt;script&gt;alert(" in t and "$a_" in t for t in svg_texts)


def test_markdown_summary_and_metrics(sweep_report, sweep_store):
    md = sweep_report.markdown
    assert md.startswith("# reporting-test: experiment report")
    assert "**8** runs: 6 finished, 1 failed, 1 running" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    # Names are isolated for bidi (FSI ... PDI) in Markdown as <bdi> does in HTML.
    assert table[1].startswith("| 1 | [\u2068hist-small\u2069](https://mlflow.example.com/")
    assert "← this run" in table[2]
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert md.count("\n| ") == 7  # header + 6 ranked runs
    m = sweep_report.metrics
    assert m["run_count"] == 8 and m["finished_runs"] == 6 and m["failed_runs"] == 1
    assert m["best_run_test_recall_at_100"] == pytest.approx(0.32)
    assert m["best_run_test_recall_at_10"] == pytest.approx(0.08)
    assert m["mean_test_recall_at_100"] == pytest.approx(1.27 / 6)
    assert m["best_run_lift_over_popular"] == pytest.approx(1.0)
    assert all(isinstance(v, float) for v in m.values())
    assert all(re.fullmatch(r"[a-z0-9_]+", k) for k in m)
    assert Path(sweep_report.pages[VIEW_COMBINED]).with_name("summary.md").read_text() == md


def test_md_escape_neutralises_tables_and_html():
    assert md_escape("a|b_<i>*") == "a\\|b\\_&lt;i&gt;\\*"


def test_redact_uri_hides_credentials():
    assert (
        TrackingUri("postgresql://u:secret@db:5432/mlflow?sslmode=x").redacted
        == "postgresql://***@db:5432/mlflow"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_writes_a_page_and_fails_when_told(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ReportUnreachableError) as info:
        write_report(uri, "x", str(tmp_path / "a"))
    result = info.value.result
    assert result.reachable is False and result.run_count == 0
    for view in (*VIEWS, VIEW_COMBINED):
        page = Path(result.pages[view]).read_text()
        assert "MLflow was unreachable" in page and uri in page
    assert "MLflow was unreachable" in result.markdown
    assert result.metrics == {"run_count": 0.0, "mlflow_reachable": 0.0}


def test_unreachable_server_does_not_fail_when_told_not_to(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    result = write_report(uri, "x", str(tmp_path), fail_on_unreachable=False)
    assert result.reachable is False
    assert "MLflow was unreachable" in Path(result.pages["leaderboard"]).read_text()


def test_missing_experiment_and_unsafe_ui_url(sweep_store, tmp_path):
    result = write_report(
        sweep_store.tracking_uri, "no-such-experiment", str(tmp_path), ui_url="javascript:alert(1)"
    )
    assert result.reachable and result.run_count == 0
    page = _page(result, VIEW_COMBINED)
    assert "does not exist (yet)" in page
    assert "javascript:" not in page
    assert "No runs in this experiment yet" in page


def test_metric_never_logged_says_so(sweep_store, tmp_path):
    result = write_report(sweep_store.tracking_uri, EXPERIMENT, str(tmp_path), rank_metric="nope")
    assert "No run has logged the ranking metric" in _page(result, "leaderboard")
    assert "No run has logged `nope` yet." in result.markdown


def test_report_without_ui_url_has_no_links(tracking_uri, tmp_path, fx):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    eid = client.create_experiment(EXPERIMENT)
    fx.log_run(
        client,
        eid,
        "only",
        test_recall={100: 0.1},
        extra_metrics={contract.DEFAULT_RANK_METRIC: 0.08},
    )
    result = write_report(tracking_uri, EXPERIMENT, str(tmp_path))
    page = _page(result, "training_curves")
    assert 'href="http' not in page and "Open in the MLflow UI" not in page
    assert "](" not in result.markdown and "| \u2068only\u2069 |" in result.markdown
    assert result.metrics["best_run_test_recall_at_100"] == pytest.approx(0.1)


def test_evil_key_constants_are_really_hostile(fx):
    assert "<script>" in fx.EVIL and "<script>" in fx.EVIL_KEY and "'" in fx.EVIL_KEY


def test_histories_failing_midway_keep_the_runs_and_say_so(sweep_store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from reporting import histories

    # The runs come from the store; the history requests go to a server that is gone.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = f"http://127.0.0.1:{_closed_port()}"

    def gone(client, uri, runs, keys):
        return histories.fetch_histories(MlflowClient(dead), dead, runs, keys)

    result = write_report(
        sweep_store.tracking_uri, EXPERIMENT, str(tmp_path), _history_fetcher=gone
    )
    assert result.reachable and result.run_count == 8
    assert "MLflow stopped answering while per-epoch histories were read" in result.markdown
    leaderboard = Path(result.pages["leaderboard"]).read_text(encoding="utf-8")
    assert "stopped answering" in leaderboard and "hist-small" in leaderboard
    # The ranking does not need histories: the best run is still first.
    assert result.metrics["best_run_test_recall_at_100"] == pytest.approx(0.32)
