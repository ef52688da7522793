"""Comparable runs only: the report ranks within the reference protocol and lists the rest apart."""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reporting import protocol
from reporting.build import write_report
from reporting.records import RunRecord
from tests.unit.reporting.mlflow_runs import log_run, standard_history
from trainer import contract

PARTS = {
    contract.TAG_PROTOCOL_DATASET: "1000:abc",
    contract.TAG_PROTOCOL_SPLIT: "strict_time train<2011-10-01 eval<2011-11-01",
    contract.TAG_PROTOCOL_CATALOG: "3665",
    contract.TAG_PROTOCOL_EVALUATION: contract.EVALUATION_PROTOCOL_VERSION,
}


def _tags(key="k-main", **parts):
    return {**PARTS, **parts, contract.TAG_PROTOCOL_KEY: key}


def _store(tracking_uri):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("protocols")
    base = 1_700_000_000_000
    job = {contract.TAG_PIPELINE_JOB: "job-1"}
    ids = {}
    for i, (name, scale, tags) in enumerate(
        [
            ("mine-a", 1.0, {**job, **_tags()}),
            ("mine-b", 1.2, {**job, **_tags()}),
            # Far better, but on another split: never ranked against the job's runs.
            ("other-split", 3.0, _tags("k-split", **{contract.TAG_PROTOCOL_SPLIT: "random"})),
            ("old", 2.0, {}),  # finished before protocol keys existed
        ]
    ):
        ids[name] = log_run(
            client,
            eid,
            name,
            test_recall={100: 0.1 * scale},
            history=standard_history(scale),
            tags=tags,
            start_time=base + i,
        )
    ids["failed"] = log_run(client, eid, "failed", status="FAILED", start_time=base + 9)
    return ids


def _names(page, table_id):
    table = page[page.index(f'id="{table_id}"') :]
    table = table[: table.index("</table>")]
    return re.findall(r"<td class=\"name\"><bdi>([^<]+)</bdi>", table)


def test_only_runs_of_the_jobs_protocol_are_ranked_the_others_listed_with_what_differs(
    tracking_uri, tmp_path
):
    _store(tracking_uri)
    result = write_report(tracking_uri, "protocols", str(tmp_path), highlight_pipeline_job="job-1")
    leaderboard = Path(result.pages[contract.VIEW_LEADERBOARD]).read_text(encoding="utf-8")
    assert _names(leaderboard, "leaderboard-table") == ["mine-b", "mine-a", "failed"]
    assert _names(leaderboard, "apart-table") == ["old", "other-split"]
    apart = leaderboard[leaderboard.index('id="apart-table"') :]
    assert "split random (compared: strict_time train&lt;2011-10-01" in apart
    assert "no protocol key" in apart
    heatmap = Path(result.pages[contract.VIEW_HEATMAP]).read_text(encoding="utf-8")
    assert "n=2" in heatmap and "n=3" not in heatmap  # the job's two runs only
    dashboard = Path(result.pages[contract.VIEW_DASHBOARD]).read_text(encoding="utf-8")
    assert "Compared: 3 runs evaluated under this pipeline job's protocol" in dashboard
    assert "2 runs of another protocol are listed apart" in dashboard
    assert result.metrics["best_run_test_recall_at_100"] == pytest.approx(0.12)
    assert "2 finished runs were evaluated under another protocol" in result.markdown


def test_without_a_job_the_latest_keyed_run_sets_the_protocol(tracking_uri, tmp_path):
    _store(tracking_uri)
    result = write_report(tracking_uri, "protocols", str(tmp_path))
    leaderboard = Path(result.pages[contract.VIEW_LEADERBOARD]).read_text(encoding="utf-8")
    assert _names(leaderboard, "leaderboard-table") == ["other-split", "failed"]
    assert set(_names(leaderboard, "apart-table")) == {"mine-a", "mine-b", "old"}


def _run(name, tags, start=0, status=contract.STATUS_FINISHED):
    return RunRecord(name, name, status, start, None, {}, tags, {}, {})


def test_reference_prefers_the_job_then_the_run_then_the_latest():
    runs = [
        _run("a", {**_tags("ka"), contract.TAG_PIPELINE_JOB: "j"}, start=1),
        _run("b", _tags("kb"), start=2),
        _run("c", {}, start=3),
    ]
    assert protocol.reference(runs, "j").key == "ka"
    assert protocol.reference(runs, "", "b").source == "this run"
    assert protocol.reference(runs, "missing-job").key == "kb"  # the latest with a key
    assert protocol.reference(runs[2:]) is None
    compared, apart = protocol.split_comparable(runs, None)
    assert compared == runs and apart == []


def test_difference_names_every_part_that_differs():
    ref = protocol.reference([_run("a", _tags())])
    other = _run("b", _tags("k2", **{contract.TAG_PROTOCOL_CATALOG: "10"}))
    assert protocol.difference(other, ref) == "catalog size 10 (compared: 3665)"
    running = _run("r", {}, status=contract.STATUS_RUNNING)
    compared, apart = protocol.split_comparable([other, running], ref)
    assert compared == [running] and [a.run for a in apart] == [other]
