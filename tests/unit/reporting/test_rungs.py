"""The report's rung table of a halving sweep, from the trials' tags on a real SQLite store."""

import shutil

import pytest
from mlflow.tracking import MlflowClient

from reporting.build import write_report
from trainer import contract

JOB = "halving-pipeline-20261203"
NAME = 'trial <script>alert("x")</script>'


@pytest.fixture(scope="module")
def _empty_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # migrating takes seconds
    return path


@pytest.fixture
def store(_empty_store, tmp_path) -> str:
    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def _trial(client, eid, name, values, status, reason="", run_status="FINISHED", job=JOB):
    tags = {
        contract.TAG_PIPELINE_JOB: job,
        contract.TAG_HALVING_RUNG: str(len(values)),
        contract.TAG_HALVING_RUNGS: "2",
        contract.TAG_HALVING_EPOCHS: str(len(values) * 2),
        contract.TAG_HALVING_STATUS: status,
        contract.TAG_HALVING_REASON: reason,
        **{contract.halving_rung_value_tag(r): f"{v:.6f}" for r, v in enumerate(values, 1)},
    }
    run = client.create_run(eid, run_name=name, tags=tags)
    for step, v in enumerate(values, 1):
        client.log_metric(run.info.run_id, contract.SELECTION_METRIC, v, step=step)
    client.set_terminated(run.info.run_id, run_status)
    return run.info.run_id


def test_the_training_curves_show_which_trial_reached_which_rung_at_what_value(store, tmp_path):
    client = MlflowClient(store)
    eid = client.create_experiment("halving-exp")
    _trial(client, eid, "best", [0.31, 0.42], contract.HALVING_COMPLETED)
    _trial(client, eid, NAME, [0.12], contract.HALVING_STOPPED, "rung 1 of 2: <b>below</b>")
    _trial(client, eid, "failed", [0.2], contract.HALVING_TRAINED, run_status="FAILED")
    _trial(client, eid, "older", [0.5], contract.HALVING_STOPPED, job="halving-pipeline-old")

    result = write_report(store, "halving-exp", str(tmp_path / "out"), highlight_pipeline_job=JOB)
    page = open(result.pages[contract.VIEW_TRAINING_CURVES], encoding="utf-8").read()
    table = page[page.index('id="rung-table"') : page.index("</table>", page.index("rung-table"))]
    rows = table.split("<tr>")[2:]
    # Furthest rung first; the other job's trial is not this job's table.
    assert [r.split("<bdi>", 1)[1].split("</bdi>", 1)[0] for r in rows] == [
        "best",
        "failed",
        "trial &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
    ]
    assert "0.3100" in rows[0] and "0.4200" in rows[0] and contract.HALVING_COMPLETED in rows[0]
    assert contract.STATUS_FAILED in rows[1]
    assert "rung 1 of 2: &lt;b&gt;below&lt;/b&gt;" in rows[2]
    assert "<script>alert" not in page and "older" not in table
    assert "2 rungs; 3 reached rung 1, 1 reached rung 2" in page


def test_a_report_without_halving_runs_has_no_rung_table(store, tmp_path):
    client = MlflowClient(store)
    eid = client.create_experiment("grid-exp")
    run = client.create_run(eid, run_name="plain")
    client.log_metric(run.info.run_id, contract.SELECTION_METRIC, 0.3, step=1)
    client.set_terminated(run.info.run_id, "FINISHED")
    result = write_report(store, "grid-exp", str(tmp_path / "out"))
    page = open(result.pages[contract.VIEW_TRAINING_CURVES], encoding="utf-8").read()
    assert "rung-table" not in page
