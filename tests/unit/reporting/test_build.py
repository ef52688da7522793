"""write_report on real SQLite stores: a sweep's own runs, failures, degraded tracking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reporting.build import write_report
from tests.unit.reporting.mlflow_runs import (
    EVIL,
    LOST_HEARTBEAT,
    log_lost_runs,
    log_run,
    standard_history,
)
from trainer import contract

EXPERIMENT = "sweep-report"
JOB = "sweep-20261127-0740"
REASON = "non-finite loss (nan) at epoch 3: " + "the learning rate was too high. " * 20
DEGRADED = "12 points sent late, 0 missing"


def _page(result, view: str) -> str:
    return Path(result.pages[view]).read_text(encoding="utf-8")


def _job(name: str) -> dict[str, str]:
    return {contract.TAG_PIPELINE_JOB: name}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, str]:
    """Two pipeline jobs: this one (2 finished, 1 failed, 1 killed) and an earlier one."""
    path = tmp_path_factory.mktemp("sweep-report") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = MlflowClient(uri)
    eid = client.create_experiment(EXPERIMENT)
    base = 1_700_000_000_000
    recall = {10: 0.05, 50: 0.12, 100: 0.2}
    ids = {"uri": uri}
    ids["old"] = log_run(
        client, eid, "old", test_recall=recall, history=standard_history(1.0),
        tags=_job("sweep-earlier"), start_time=base,
    )  # fmt: skip
    ids["mine-a"] = log_run(
        client, eid, "mine-a", fc="fc_history", test_recall={100: 0.3},
        history=standard_history(1.5), tags=_job(JOB), start_time=base + 1000,
    )  # fmt: skip
    ids["mine-b"] = log_run(
        client, eid, "mine-b", mc="mc_large", test_recall={100: 0.25},
        history=standard_history(1.2), start_time=base + 2000,
        tags={**_job(JOB), contract.TAG_TRACKING_DEGRADED: DEGRADED},
    )  # fmt: skip
    ids["mine-failed"] = log_run(
        client, eid, "mine-failed", status=contract.STATUS_FAILED, start_time=base + 3000,
        tags={**_job(JOB), contract.TAG_FAILURE_REASON: REASON},
    )  # fmt: skip
    ids["mine-killed"] = log_run(
        client, eid, "mine-killed", status=contract.STATUS_KILLED, start_time=base + 4000,
        tags=_job(JOB),
    )  # fmt: skip
    return ids


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-pages")
    return write_report(
        sweep["uri"], EXPERIMENT, str(out), highlight_pipeline_job=JOB,
        ui_url="https://mlflow.example.com",
    )  # fmt: skip


def _highlighted(page: str, table_id: str) -> list[str]:
    table = page[page.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    return re.findall(r'<tr class="highlight".*?</tr>', table, flags=re.DOTALL)


def test_dashboard_counts_what_this_job_trained_finished_and_failed(report):
    page = _page(report, contract.VIEW_DASHBOARD)
    assert re.search(r'id="job-total">4<', page)
    assert re.search(r'id="job-finished">2<', page)
    assert re.search(r'id="job-failed">2<', page)  # FAILED and KILLED
    assert JOB in page[page.index('id="job-summary"') :][:400]
    assert report.metrics["job_runs"] == 4.0 and report.metrics["job_failed_runs"] == 2.0
    assert f"This pipeline job (\u2068{JOB.replace('_', '')}\u2069) trained **4** runs" in (
        report.markdown
    )


def test_this_jobs_runs_are_marked_in_every_view(report, sweep):
    leaderboard = _page(report, contract.VIEW_LEADERBOARD)
    marked = _highlighted(leaderboard, "leaderboard-table")
    assert sorted(re.search(r'data-run-id="(\w+)"', r)[1] for r in marked) == sorted(
        sweep[n] for n in ("mine-a", "mine-b", "mine-failed", "mine-killed")
    )
    assert all("this job" in r for r in marked)
    old_row = leaderboard[leaderboard.index(f'data-run-id="{sweep["old"]}"') :]
    assert "this job" not in old_row[: old_row.index("</tr>")]
    for view in contract.VIEWS:
        assert 'class="badge job"' in _page(report, view), view
    # The heatmap says how many of a cell's runs this job trained; the recall chart stars them.
    assert "this job: 1" in _page(report, contract.VIEW_HEATMAP)
    assert "\u2605 mine-a" in _page(report, contract.VIEW_RECALL_AT_K)
    assert "this pipeline job's runs</text>" in _page(report, contract.VIEW_DASHBOARD)
    table = [line for line in report.markdown.splitlines() if line.startswith("| ")]
    assert "\u2190 this job" in table[1] and "this job" not in table[3]


def test_failed_runs_are_listed_with_their_reason(report):
    page = _page(report, contract.VIEW_DASHBOARD)
    failed = page[page.index('id="failed-table"') :]
    failed = failed[: failed.index("</table>")]
    assert "mine-failed" in failed and "mine-killed" in failed
    assert "no reason logged" in failed
    # Shortened in the cell, the full reason (up to the tooltip's limit) in the title.
    shown = re.search(r'<bdi title="([^"]*)">([^<]*)</bdi>', failed)
    assert shown[1].startswith("non-finite loss (nan) at epoch 3") and len(shown[1]) > 600
    assert len(shown[2]) <= 200 and f"({len(REASON):,} characters)" in shown[2]
    leaderboard = _page(report, contract.VIEW_LEADERBOARD)
    assert leaderboard.count('<div class="reason">') == 2
    assert "non-finite loss (nan) at epoch 3" in leaderboard
    assert "- \u2068mine-failed\u2069 (this job): failed, \u2068non-finite loss" in report.markdown


def test_degraded_runs_are_marked_and_counted(report):
    page = _page(report, contract.VIEW_DASHBOARD)
    assert re.search(r'id="stat-degraded">1<', page)
    degraded = page[page.index('id="degraded-table"') :]
    assert "mine-b" in degraded and DEGRADED in degraded
    assert f'title="Tracking was degraded while this run trained: {DEGRADED}">degraded' in (
        _page(report, contract.VIEW_LEADERBOARD)
    )
    assert report.metrics["degraded_runs"] == 1.0
    assert "Tracking was degraded (points sent late or missing) in **1** runs" in report.markdown


def test_without_a_job_nothing_is_marked_as_this_jobs(sweep, tmp_path):
    result = write_report(sweep["uri"], EXPERIMENT, str(tmp_path))
    for view in (*contract.VIEWS, contract.VIEW_COMBINED):
        assert 'class="badge job"' not in _page(result, view)
    assert "job_runs" not in result.metrics
    # Failures and degradation are reported whoever trained the runs.
    assert 'id="failed-table"' in _page(result, contract.VIEW_DASHBOARD)
    assert result.metrics["degraded_runs"] == 1.0


def test_the_command_line_marks_a_pipeline_job(sweep, tmp_path, capsys):
    from reporting.__main__ import main

    rc = main(["--tracking-uri", sweep["uri"], "--experiment", EXPERIMENT,
               "--out", str(tmp_path), "--highlight-job", JOB])  # fmt: skip
    assert rc == 0
    assert "trained **4** runs: 2 finished, 2 failed" in capsys.readouterr().out
    assert re.search(r'id="job-total">4<', (tmp_path / "dashboard.html").read_text())


def _status_cell(page: str, name: str) -> str:
    row = page[page.index(f"<bdi>{name}</bdi>") :]
    return row[: row.index("</tr>")]


LOST_CELL = (
    '<span class="badge FAILED lost" title="No heartbeat since {0}: its process died without '
    'ending the run">lost</span> <span class="muted heard">last heard <bdi>{0}</bdi></span>'
)


@pytest.mark.parametrize("end_lost", [True, False])
def test_lost_runs_are_shown_lost_with_when_they_were_last_heard_from(
    tracking_uri, tmp_path, end_lost
):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("lost")
    ids = log_lost_runs(client, eid)
    result = write_report(tracking_uri, "lost", str(tmp_path), end_lost=end_lost)
    leaderboard = _page(result, contract.VIEW_LEADERBOARD)
    dashboard = _page(result, contract.VIEW_DASHBOARD)
    for name, heard in (("oom-killed", LOST_HEARTBEAT), ("never-beat", "2023-11-14T22:13:20Z")):
        assert LOST_CELL.format(heard) in _status_cell(leaderboard, name)
        assert f"lost: no heartbeat since {heard}" in _status_cell(leaderboard, name)
        failed = dashboard[dashboard.index('id="failed-table"') :]
        assert name in failed[: failed.index("</table>")]
        status = client.get_run(ids[name]).info.status
        assert status == (contract.STATUS_FAILED if end_lost else contract.STATUS_RUNNING)
    assert '<span class="badge RUNNING">running</span>' in _status_cell(leaderboard, "alive")
    # Counted as failed, not as running; said in the card, the summary and the metrics.
    assert re.search(r'id="stat-failed">2<', dashboard) and "2 lost" in dashboard
    assert "1 still running" in dashboard
    assert "**4** runs: 1 finished, 2 failed (2 lost), 1 running." in result.markdown
    assert ": lost, \u2068lost: no heartbeat since" in result.markdown
    assert result.metrics["lost_runs"] == 2.0 and result.metrics["failed_runs"] == 2.0
    note = "ended FAILED now, tagged lost" if end_lost else "this report only reads"
    assert note in dashboard


def test_a_lost_tag_is_escaped_like_everything_from_mlflow(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("lost")
    log_run(client, eid, "tampered", status=contract.STATUS_FAILED, tags={contract.TAG_LOST: EVIL})
    page = _page(write_report(tracking_uri, "lost", str(tmp_path)), contract.VIEW_LEADERBOARD)
    cell = _status_cell(page, "tampered")
    assert "<script>" not in cell and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in cell
    assert "lost: no heartbeat since &lt;script&gt;" in cell  # no reason tag: the lost one
