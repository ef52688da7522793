"""Many trainers at once against the deployed server on PostgreSQL: nothing is lost.

8 processes, each driving ``RunTracker`` through 20 epochs x 8 metrics, are released at the
same instant into an experiment that does not exist yet, so they all race to create it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import REPO_ROOT
from trainer import contract

pytestmark = pytest.mark.integration

WRITERS = 8
EPOCHS = 20
METRICS = 8
WRITER = """
import os, sys, time
import mlflow.tracking  # imported before the start signal: all race on the same instant
from trainer.tracking import RunTracker
url, experiment, go, index = sys.argv[1:5]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
tracker = RunTracker(url, experiment, flush_interval_s=0.2)
tracker.start(f"writer-{index}", {"writer": index}, {"writer": index})
for epoch in range(1, EPOCHS + 1):
    tracker.log_metrics({f"m{i}": epoch * 10 + i for i in range(METRICS)}, step=epoch)
    time.sleep(0.05)
tracker.finish()
print("run", tracker.run_id, tracker.degraded_reason, flush=True)
""".replace("EPOCHS", str(EPOCHS)).replace("METRICS", str(METRICS))


def watch_health(url: str, stop: threading.Event, answers: list) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                answers.append(response.status)
        except OSError as err:
            answers.append(repr(err))
        time.sleep(0.2)


def test_eight_writers_creating_one_experiment_lose_nothing(
    postgres_uri, mlflow_server_factory, tmp_path
):
    server = mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": postgres_uri,
            "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "MLFLOW_WORKERS": "2",
        }
    )
    experiment = f"writers-{time.time_ns()}"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, server.url, experiment, str(go), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WRITERS)
    ]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    stop, health = threading.Event(), []
    watcher = threading.Thread(target=watch_health, args=(server.url, stop, health))
    watcher.start()
    go.touch()
    outputs = [writer.communicate(timeout=300) for writer in writers]
    stop.set()
    watcher.join()

    assert [w.returncode for w in writers] == [0] * WRITERS, [err for _, err in outputs]
    # MLflow prints its own "View run ..." lines on stdout too.
    reported = [
        next(line for line in out.splitlines() if line.startswith("run ")).split()
        for out, _ in outputs
    ]
    assert all(r[0] == "run" and r[2] == "None" for r in reported), reported
    client = MlflowClient(server.url)
    [found] = client.search_experiments(filter_string=f"name = '{experiment}'")
    runs = client.search_runs([found.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(r[1] for r in reported)
    assert {r.info.status for r in runs} == {contract.STATUS_FINISHED}
    for run in runs:
        for i in range(METRICS):
            points = client.get_metric_history(run.info.run_id, f"m{i}")
            assert sorted(m.step for m in points) == list(range(1, EPOCHS + 1))
    assert health and set(health) == {200}, health


def test_trainers_starting_together_on_a_fresh_embedded_store_all_get_their_run(tmp_path):
    # Several trainings of a sweep open a new SQLite store at the same instant: each process
    # then creates the schema, and all but one fail ("table ... already exists"). The tracker
    # opens the store in its retry loop, so every run is created and complete.
    writers_count = 4
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, "fresh", str(go), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(writers_count)
    ]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [writer.communicate(timeout=300) for writer in writers]
    assert [w.returncode for w in writers] == [0] * writers_count, [e for _, e in outputs]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fresh").experiment_id])
    assert len(runs) == writers_count
    assert {r.info.status for r in runs} == {contract.STATUS_FINISHED}
    for run in runs:
        points = client.get_metric_history(run.info.run_id, "m0")
        assert sorted(m.step for m in points) == list(range(1, EPOCHS + 1))
