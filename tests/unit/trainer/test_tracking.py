"""RunTracker and the backlog replay against real SQLite MLflow stores and real processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from trainer import contract
from trainer.__main__ import main as trainer_main
from trainer.tracking import backlog as tracking_backlog
from trainer.tracking.send import MAX_PARAM_VALUE, TrackingInputError
from trainer.tracking.tracker import RunTracker, read_run_info

REPO_ROOT = Path(__file__).resolve().parents[3]
DEAD_URI = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


@pytest.fixture(autouse=True)
def fast_http(monkeypatch):
    # A refused connection should fail in milliseconds, not after MLflow's HTTP retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture
def store(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def drive(tracker: RunTracker, artifact: Path, epochs: int = 3, key: str = "") -> None:
    """What a training does: a run with params and tags, per-epoch metrics, an artifact."""
    tracker.start("run-a", {"epochs": epochs, "lr": 0.1}, {"model_type": "two_tower"}, run_key=key)
    for epoch in range(1, epochs + 1):
        tracker.log_metrics({"loss": 1.0 / epoch, "val_loss": 2.0 / epoch}, step=epoch)
    tracker.set_tags({"extra": "yes"})
    artifact.write_text("config: 1\n")
    tracker.log_artifact(str(artifact))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_healthy_run_is_sent_whole_and_finished(store, tmp_path):
    tracker = RunTracker(store, "exp", backlog_dir=str(tmp_path / "model"))
    drive(tracker, tmp_path / "config.yaml")
    tracker.finish()

    client = MlflowClient(store)
    run = client.get_run(tracker.run_id)
    assert run.info.status == contract.STATUS_FINISHED
    assert run.data.params == {"epochs": "3", "lr": "0.1"}
    assert run.data.tags["model_type"] == "two_tower" and run.data.tags["extra"] == "yes"
    assert contract.TAG_TRACKING_DEGRADED not in run.data.tags
    assert history(client, tracker.run_id, "loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["config.yaml"]
    assert not (tmp_path / "model" / contract.BACKLOG_FILE).exists()
    assert tracker.degraded_reason is None


def test_the_same_run_key_reuses_the_run(store, tmp_path):
    first = RunTracker(store, "exp")
    drive(first, tmp_path / "a.yaml", key="job-1/train")
    first.finish(contract.STATUS_FAILED, "preempted")

    second = RunTracker(store, "exp")
    run_id = second.start("run-a", {"epochs": 3, "lr": 0.1}, {}, run_key="job-1/train")
    client = MlflowClient(store)
    assert run_id == first.run_id
    assert client.get_run(run_id).info.status == contract.STATUS_RUNNING
    second.finish()

    runs = client.search_runs([second.experiment_id], run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].data.tags[contract.TAG_RUN_KEY] == "job-1/train"
    assert runs[0].info.status == contract.STATUS_FINISHED


def test_a_run_that_never_reached_mlflow_is_replayed_whole_once(store, tmp_path):
    model = tmp_path / "model"
    tracker = RunTracker(DEAD_URI, "exp", backlog_dir=str(model), flush_interval_s=0.05)
    drive(tracker, tmp_path / "config.yaml", epochs=4)
    tracker.finish()
    tracker.write_run_info(str(model))
    assert tracker.run_id is None and "create_run" in tracker.degraded_reason
    ops = [
        json.loads(line)["op"] for line in (model / contract.BACKLOG_FILE).read_text().splitlines()
    ]
    assert ops[:3] == ["session", "create_run", "params"] and ops[-1] == "terminate"

    assert trainer_main(["replay", str(model), "--tracking-uri", store]) == 0
    run_id = read_run_info(str(model))["run_id"]
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FINISHED
    assert run.data.params == {"epochs": "4", "lr": "0.1"}
    assert run.data.tags["model_type"] == "two_tower"
    assert (
        "8 metric point(s) sent late (8 by replay)" in run.data.tags[contract.TAG_TRACKING_DEGRADED]
    )
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]

    # Again, and again with the progress record gone: still one copy of each point, one run.
    assert trainer_main(["replay", str(model), "--tracking-uri", store]) == 0
    os.remove(str(model / contract.BACKLOG_FILE) + tracking_backlog.PROGRESS_SUFFIX)
    result = tracking_backlog.replay(str(model / contract.BACKLOG_FILE), store)
    assert result.points_sent == 0 and result.run_ids == [run_id]
    assert history(client, run_id, "val_loss") == [(1, 2.0), (2, 1.0), (3, 2 / 3), (4, 0.5)]
    assert len(client.search_runs([run.info.experiment_id], run_view_type=ViewType.ALL)) == 1


def test_an_unfinished_replay_goes_on_where_it_stopped(store, tmp_path):
    client = MlflowClient(store)
    tracker = RunTracker(store, "exp", backlog_dir=str(tmp_path))
    tracker.start("run", {}, {})
    run_id = tracker.run_id
    tracker.finish()
    backlog = tmp_path / contract.BACKLOG_FILE
    tracking_backlog.append_backlog(
        str(backlog),
        {"run_id": run_id, "tracking_uri": store},
        [{"op": "metrics", "metrics": [["m", float(i), 1000 + i, i]]} for i in range(5)],
    )
    tracking_backlog.save_progress(str(backlog), 3, run_id)  # lines 0-2 went out before

    result = tracking_backlog.replay(str(backlog))

    assert result.points_sent == 3 and result.lines_sent == 3
    assert history(client, run_id, "m") == [(2, 2.0), (3, 3.0), (4, 4.0)]


def test_finish_tags_why_a_run_failed(store):
    tracker = RunTracker(store, "exp")
    tracker.start("run", {}, {})
    with pytest.raises(ZeroDivisionError):
        try:
            1 / 0  # noqa: B018 - the training's failure
        finally:
            tracker.finish(contract.STATUS_FAILED)
    run = MlflowClient(store).get_run(tracker.run_id)
    assert run.info.status == contract.STATUS_FAILED
    assert run.data.tags[contract.TAG_FAILURE_REASON] == "ZeroDivisionError: division by zero"


CHILD = """
import os, signal, sys, time
from trainer.tracking import RunTracker
{before}
tracker = RunTracker(sys.argv[1], "exp")
print(tracker.start("run", {{}}, {{}}), flush=True)
tracker.log_metrics({{"loss": 1.0}}, step=1)
{ending}
"""


def run_child(store: str, ending: str, before: str = "") -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    script = CHILD.format(ending=ending, before=before)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), store],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, done.stdout.split()[0]


def test_sigterm_ends_the_run_killed_and_still_kills_the_process(store):
    done, run_id = run_child(store, "os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)")
    assert done.returncode == -signal.SIGTERM, done.stderr
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == contract.STATUS_KILLED
    assert run.data.tags[contract.TAG_FAILURE_REASON] == "terminated by signal SIGTERM"
    assert history(MlflowClient(store), run_id, "loss") == [(1, 1.0)]


def test_sigterm_chains_to_the_handler_set_before(store):
    done, run_id = run_child(
        store,
        "os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)",
        before="signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))",
    )
    assert done.returncode == 7, done.stderr
    assert MlflowClient(store).get_run(run_id).info.status == contract.STATUS_KILLED


def test_a_process_ending_without_finish_leaves_the_run_failed(store):
    done, run_id = run_child(store, "raise SystemExit(3)")
    assert done.returncode == 3, done.stderr
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == contract.STATUS_FAILED
    assert "without finishing" in run.data.tags[contract.TAG_FAILURE_REASON]


def test_a_param_over_the_limit_is_kept_whole_as_an_artifact(store, tmp_path):
    long_value = "x" * (MAX_PARAM_VALUE + 500) + "END"
    tracker = RunTracker(store, "exp", backlog_dir=str(tmp_path / "model"))
    tracker.start("run", {"features": long_value, "short": 1}, {})
    tracker.finish()
    client = MlflowClient(store)
    params = client.get_run(tracker.run_id).data.params
    assert len(params["features"]) == MAX_PARAM_VALUE and params["short"] == "1"
    assert params["features"].endswith("whole value in artifact params/features.txt]")
    local = client.download_artifacts(tracker.run_id, "params/features.txt", str(tmp_path))
    assert Path(local).read_text() == long_value


def test_nan_and_infinite_metrics_are_logged_as_mlflow_stores_them(store):
    tracker = RunTracker(store, "exp")
    tracker.start("run", {}, {})
    tracker.log_metrics({"loss": float("nan"), "up": float("inf"), "down": float("-inf")}, step=1)
    tracker.finish()
    metrics = MlflowClient(store).get_run(tracker.run_id).data.metrics
    assert math.isnan(metrics["loss"])
    assert metrics["up"] > 1e300 and metrics["down"] < -1e300


@pytest.mark.parametrize(
    "uri", ["localhost:5000", "htp://127.0.0.1:5000", "http://", "sqlite://mlflow.db", "http://h:x"]
)
def test_a_malformed_tracking_uri_is_named_at_construction(uri):
    with pytest.raises(ValueError, match="tracking URI") as err:
        RunTracker(uri, "exp")
    assert repr(uri) in str(err.value)


def test_a_deleted_experiment_is_named_and_nothing_is_lost(store, tmp_path):
    client = MlflowClient(store)
    client.delete_experiment(client.create_experiment("gone"))
    tracker = RunTracker(store, "gone", backlog_dir=str(tmp_path))
    assert tracker.start("run", {"a": 1}, {}) is None
    tracker.log_metrics({"loss": 1.0}, step=1)
    tracker.finish()
    assert "experiment 'gone'" in tracker.degraded_reason and "deleted" in tracker.degraded_reason
    assert (
        tracking_backlog.metric_points(
            json.loads(line) for line in (tmp_path / contract.BACKLOG_FILE).read_text().splitlines()
        )
        == 1
    )
    with pytest.raises(TrackingInputError, match="experiment 'gone'"):
        tracking_backlog.replay(str(tmp_path))


@pytest.mark.parametrize("deleted", [True, False])
def test_resuming_a_deleted_or_unknown_run_is_named(store, tmp_path, deleted):
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("exp")).info.run_id
    if deleted:
        client.delete_run(run_id)
    else:
        run_id = "0" * 32
    tracker = RunTracker(store, "exp", backlog_dir=str(tmp_path))
    tracker.resume(run_id)
    tracker.log_metrics({"test_recall_at_10": 0.3})
    tracker.finish()
    assert run_id in tracker.degraded_reason
    assert ("is deleted" if deleted else "does not exist") in tracker.degraded_reason
    assert (tmp_path / contract.BACKLOG_FILE).exists()


def test_a_param_mlflow_refuses_is_kept_and_counted_while_the_rest_goes_on(store, tmp_path):
    first = RunTracker(store, "exp")
    first.start("run", {"lr": 0.1}, {}, run_key="k")
    first.finish()
    again = RunTracker(store, "exp", backlog_dir=str(tmp_path))
    again.start("run", {"lr": 0.2}, {}, run_key="k")  # a param cannot change once logged
    again.log_metrics({"loss": 0.5}, step=1)
    again.finish()

    run = MlflowClient(store).get_run(first.run_id)
    assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"loss": 0.5}
    assert run.info.status == contract.STATUS_FINISHED
    assert "1 other operation(s) still missing" in run.data.tags[contract.TAG_TRACKING_DEGRADED]
    assert "lr" in again.degraded_reason
    [header, rejected] = [
        json.loads(line) for line in (tmp_path / contract.BACKLOG_FILE).read_text().splitlines()
    ]
    assert header["op"] == "session" and rejected["original"]["params"] == {"lr": "0.2"}


def test_a_run_key_with_a_quote_is_refused():
    with pytest.raises(ValueError, match="run_key"):
        RunTracker("sqlite:///x.db", "exp").start("run", {}, {}, run_key="it's")


def test_replaying_only_an_artifact_retags_the_run_with_nothing_missing(store, tmp_path):
    # The case of a model refused by a size limit: every point reached MLflow, one upload not.
    tracker = RunTracker(store, "exp")
    tracker.start("run", {"lr": 0.1}, {}, run_key="k")
    tracker.log_metrics({"loss": 0.5}, step=1)
    tracker.finish()
    client = MlflowClient(store)
    client.set_tag(tracker.run_id, contract.TAG_TRACKING_DEGRADED, "1 other operation(s) missing")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    header = {"run_id": tracker.run_id, "experiment": "exp", "tracking_uri": store}
    tracking_backlog.append_backlog(
        str(tmp_path / contract.BACKLOG_FILE),
        {**header, "late_points": 0, "reason": "HTTP 413"},
        [{"op": "artifact", "path": str(model), "artifact_path": None}],
    )

    result = tracking_backlog.replay(str(tmp_path))

    assert result.ops_sent == 1 and result.points_sent == 0 and not result.rejected
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["model.bin"]
    tag = client.get_run(tracker.run_id).data.tags[contract.TAG_TRACKING_DEGRADED]
    assert "1 operation(s) sent by replay, 0 operation(s) still missing" in tag
    assert "first error: HTTP 413" in tag
