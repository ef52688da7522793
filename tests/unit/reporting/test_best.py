"""The best-model step's choice is the leaderboard's first row, over every finished run."""

import math

import pytest
from mlflow.tracking import MlflowClient

from reporting import aggregate, best
from reporting.metric import RankMetric
from reporting.query import ExperimentReader
from tests.unit.reporting.mlflow_runs import log_lost_runs, log_run
from trainer import contract

RANK = contract.test_recall_key(100)


def _store(tracking_uri):
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.create_experiment("best-test")
    job = {contract.TAG_PIPELINE_JOB: "job-1"}
    # 60 finished runs (more than one page of 50), the best one logged first (oldest).
    ids = [
        log_run(client, exp, f"r{i}", test_recall={100: 0.20 + i / 1000}, tags=job, start_time=i)
        for i in range(60)
    ]
    top = ids[-1]
    # Logged values the leaderboard never ranks: an infinity, a NaN; a better run that failed;
    # a better run of another job.
    log_run(client, exp, "inf", test_recall={100: math.inf}, tags=job, start_time=100)
    log_run(client, exp, "nan", test_recall={100: math.nan}, tags=job, start_time=101)
    log_run(client, exp, "failed", test_recall={100: 0.9}, tags=job, status="FAILED")
    log_run(client, exp, "other", test_recall={100: 0.8}, tags={contract.TAG_PIPELINE_JOB: "j2"})
    return top


def test_best_run_is_the_leaderboards_first_finished_run_of_the_job(tracking_uri):
    top = _store(tracking_uri)
    chosen = best.best_run(tracking_uri, "best-test", RANK, pipeline_job="job-1")
    assert chosen.run_id == top
    assert chosen.metrics[RANK] == pytest.approx(0.259)

    runs = ExperimentReader(tracking_uri).read("best-test").runs
    finished = [r for r in runs if r.status == "FINISHED" and r.pipeline_job == "job-1"]
    assert aggregate.leaderboard(finished, RankMetric.of(RANK))[0].run.run_id == chosen.run_id


def test_best_run_of_the_experiment_and_when_none_qualifies(tracking_uri):
    _store(tracking_uri)
    assert best.best_run(tracking_uri, "best-test", RANK).feature_config_id == "fc_ids"
    with pytest.raises(best.NoFinishedRunError, match="no finished run"):
        best.best_run(tracking_uri, "best-test", "no_such_metric", pipeline_job="job-1")
    with pytest.raises(best.NoFinishedRunError, match="does not exist"):
        best.best_run(tracking_uri, "missing", RANK)


def test_a_halving_trial_stopped_at_a_rung_never_competes(tracking_uri):
    top = _store(tracking_uri)
    client = MlflowClient(tracking_uri)
    (exp,) = [e.experiment_id for e in client.search_experiments() if e.name == "best-test"]
    stopped = {
        contract.TAG_PIPELINE_JOB: "job-1",
        contract.TAG_HALVING_STATUS: contract.HALVING_STOPPED,
    }
    log_run(client, exp, "stopped", test_recall={100: 0.95}, tags=stopped, start_time=200)
    assert best.best_run(tracking_uri, "best-test", RANK, pipeline_job="job-1").run_id == top


@pytest.mark.parametrize("end_lost", [True, False])
def test_the_best_model_step_ends_the_experiments_lost_runs_first(tracking_uri, end_lost):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment("best-test")
    ids = log_lost_runs(client, eid)
    chosen = best.best_run(tracking_uri, "best-test", RANK, end_lost=end_lost)
    assert chosen.run_id == ids["done"]
    lost = client.get_run(ids["oom-killed"])
    if end_lost:
        assert lost.info.status == contract.STATUS_FAILED
        assert lost.data.tags[contract.TAG_FAILURE_REASON].startswith("lost: no heartbeat since")
    else:
        assert lost.info.status == contract.STATUS_RUNNING
    assert client.get_run(ids["alive"]).info.status == contract.STATUS_RUNNING


def test_the_default_rank_metric_chooses_on_validation_where_test_would_disagree(
    tracking_uri, tmp_path
):
    from reporting.build import write_report
    from tests.unit.reporting.mlflow_runs import standard_history

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("best-test")
    job = {contract.TAG_PIPELINE_JOB: "job-1"}
    # Better on validation (best val recall@100 0.24 against 0.16), worse on test.
    val_winner = log_run(
        client, exp, "val-winner", test_recall={100: 0.30}, history=standard_history(1.5), tags=job
    )
    log_run(
        client, exp, "test-winner", test_recall={100: 0.40}, history=standard_history(1.0), tags=job
    )
    by_test = best.best_run(tracking_uri, "best-test", RANK, pipeline_job="job-1")
    assert by_test.run_id != val_winner  # the two rankings disagree

    chosen = best.best_run(
        tracking_uri, "best-test", contract.DEFAULT_RANK_METRIC, pipeline_job="job-1"
    )
    assert contract.DEFAULT_RANK_METRIC == "best_val_recall_at_100"
    assert chosen.run_id == val_winner
    assert chosen.metrics[contract.DEFAULT_RANK_METRIC] == pytest.approx(0.24)
    assert chosen.metrics[RANK] == pytest.approx(0.30)  # test recall goes along, unused

    # Every "best run" of the report is the same one; its test recall is shown beside.
    result = write_report(tracking_uri, "best-test", str(tmp_path), highlight_pipeline_job="job-1")
    assert result.metrics["best_run_best_val_recall_at_100"] == pytest.approx(0.24)
    assert result.metrics["best_run_test_recall_at_100"] == pytest.approx(0.30)
    dashboard = (tmp_path / "dashboard.html").read_text(encoding="utf-8")
    best_card = dashboard[dashboard.index('id="stat-best"') :][:200]
    assert "0.3000" in best_card and "val-winner" in best_card
    assert "**\u2068val-winner\u2069**" in result.markdown


def test_the_best_run_of_the_experiment_competes_only_within_the_latest_protocol(tracking_uri):
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("best-test")
    key = contract.TAG_PROTOCOL_KEY
    log_run(client, exp, "old-split", test_recall={100: 0.9}, tags={key: "k1"}, start_time=1)
    latest = log_run(client, exp, "latest", test_recall={100: 0.3}, tags={key: "k2"}, start_time=2)
    assert best.best_run(tracking_uri, "best-test", RANK).run_id == latest


def _log_val_rows(client, run_id, folder, pairs, hits):
    """Logs per-buyer validation rows (the model's and a baseline's) as the evaluate step does."""
    import numpy as np
    import pandas as pd

    from trainer import retrieval

    frames = []
    for scorer, h in ((contract.SCORER_MODEL, hits), (contract.BASELINE_POPULAR, hits // 2)):
        frame = pd.DataFrame(
            {contract.SCORER: scorer, contract.BUYER_ID: [f"b{i}" for i in range(len(pairs))]}
        )
        for col in contract.per_buyer_columns():
            frame[col] = pairs if col.endswith("pairs") else np.minimum(h, pairs)
        frames.append(frame)
    folder.mkdir(parents=True)
    path = retrieval.write_rows(frames, str(folder / contract.PER_BUYER_VAL_FILE))
    client.log_artifact(run_id, path, contract.EVALUATION_ARTIFACT_DIR)


def test_the_best_model_step_tags_each_run_tied_or_not_by_a_paired_test(tracking_uri, tmp_path):
    import numpy as np

    from reporting.build import write_report
    from tests.unit.reporting.mlflow_runs import standard_history

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("ties", artifact_location=str(tmp_path / "artifacts"))
    job = {contract.TAG_PIPELINE_JOB: "job-1"}
    rng = np.random.default_rng(1)
    pairs = rng.integers(1, 20, 1500)
    lead_hits = rng.binomial(pairs, 0.3)
    # A copy of the leader (tied), a clearly worse run, an old run without rows.
    specs = {
        "leader": (1.5, lead_hits),
        "twin": (1.45, lead_hits),
        "worse": (1.4, lead_hits * 2 // 3),
        "old": (1.3, None),
    }
    ids = {}
    for i, (name, (scale, hits)) in enumerate(specs.items()):
        ids[name] = log_run(
            client, exp, name, history=standard_history(scale), tags=job, start_time=i
        )
        if hits is not None:
            _log_val_rows(client, ids[name], tmp_path / name, pairs, hits)
    chosen = best.best_run(tracking_uri, "ties", contract.DEFAULT_RANK_METRIC, "job-1")
    assert chosen.run_id == ids["leader"] and chosen.tied_run_ids == [ids["twin"]]
    tags = {name: client.get_run(rid).data.tags for name, rid in ids.items()}
    assert all(tags[n][contract.TAG_BEST_RUN_ID] == ids["leader"] for n in ("leader", "twin"))
    assert tags["leader"][contract.TAG_TIED_WITH_BEST] == "true"
    assert tags["twin"][contract.TAG_TIED_WITH_BEST] == "true"
    assert tags["twin"][contract.TAG_DIFF_VS_BEST_CI] == "[+0.0000, +0.0000]"
    assert tags["worse"][contract.TAG_TIED_WITH_BEST] == "false"
    assert "1500 validation buyers, recall@100" in tags["worse"][contract.TAG_TIE_TEST]
    assert contract.TAG_TIED_WITH_BEST not in tags["old"]  # no rows: left to the report

    # The leaderboard marks ties from the tags; the old run has no interval: not judged.
    result = write_report(tracking_uri, "ties", str(tmp_path / "report"))
    board = (tmp_path / "report" / "leaderboard.html").read_text(encoding="utf-8")
    row = board[board.index(f'data-run-id="{ids["twin"]}"') :].split("</tr>")[0]
    assert "tied with #1" in row and "vs #1: <bdi>[+0.0000, +0.0000]</bdi>" in row
    assert "approximate" not in row
    worse = board[board.index(f'data-run-id="{ids["worse"]}"') :].split("</tr>")[0]
    assert "tied with #1" not in worse and "vs #1: <bdi>[-0.1" in worse
    assert "paired over the same validation buyers" in result.markdown


def test_ties_are_not_judged_on_a_test_metric(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("ties", artifact_location=str(tmp_path / "artifacts"))
    rid = log_run(client, exp, "only", test_recall={100: 0.3})
    assert best.best_run(tracking_uri, "ties", RANK).tied_run_ids == []
    assert contract.TAG_BEST_RUN_ID not in client.get_run(rid).data.tags
