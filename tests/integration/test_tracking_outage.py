"""RunTracker against the deployed server (entrypoint.sh on PostgreSQL) that goes away.

A run is driven through ``RunTracker`` the way training drives it (params and tags at start,
per-epoch metrics, an artifact, finish) while the server is killed and restarted on the same
port and store, or is down until the run has ended and the backlog is replayed by
``python -m trainer replay``. Afterwards MLflow must hold every point exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import REPO_ROOT, MlflowServer, free_port
from trainer import contract
from trainer.tracking.tracker import RunTracker

pytestmark = pytest.mark.integration

EPOCHS = 16
METRICS = ("loss", "val_loss", "val_recall_at_10", "val_recall_at_100")
PARAMS = {"epochs": EPOCHS, "batch_size": 4096, "learning_rate": 0.1}
TAGS = {"model_type": contract.MODEL_TYPE_TWO_TOWER, "dataset_name": "online_retail"}


@pytest.fixture
def server_env(postgres_uri: str, tmp_path: Path) -> dict[str, str]:
    return {
        "MLFLOW_BACKEND_STORE_URI": postgres_uri,
        "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }


def epoch_metrics(epoch: int) -> dict[str, float]:
    return {name: round(1.0 / epoch + i, 6) for i, name in enumerate(METRICS)}


def assert_run_complete(url: str, run_id: str) -> dict[str, str]:
    """Every epoch of every metric exactly once, params, tags, artifact, FINISHED."""
    client = MlflowClient(url)
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FINISHED
    assert run.data.params == {k: str(v) for k, v in PARAMS.items()}
    assert TAGS.items() <= run.data.tags.items()
    for name in METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run_id, name))
        assert steps == list(range(1, EPOCHS + 1)), name
    assert [a.path for a in client.list_artifacts(run_id)] == ["experiment.yaml"]
    return run.data.tags


def test_a_server_killed_and_restarted_mid_run_loses_nothing(server_env, tmp_path):
    timeline: list[str] = []
    t0 = time.monotonic()

    def note(event: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.1f} s  {event}")

    server = MlflowServer(server_env, tmp_path / "server-1.log")
    server.wait_healthy()
    tracker = RunTracker(
        server.url, "outage-mid-run", backlog_dir=str(tmp_path / "model"), flush_interval_s=0.5
    )
    tracker.start("outage", PARAMS, TAGS, run_key="outage-mid-run")
    note(f"run {tracker.run_id} started")
    restarted: list[MlflowServer] = []
    for epoch in range(1, EPOCHS + 1):
        tracker.log_metrics(epoch_metrics(epoch), step=epoch)
        time.sleep(0.5)
        if epoch == 4:
            server.kill()
            note("epoch 4 logged; server killed (SIGKILL to its process group)")

            def restart() -> None:
                time.sleep(5)
                note("server restarting on the same port and database")
                again = MlflowServer(server_env, tmp_path / "server-2.log", port=server.port)
                restarted.append(again)
                again.wait_healthy()
                note("server healthy again")

            restarter = threading.Thread(target=restart)
            restarter.start()
        if epoch == 10:
            # A real epoch takes minutes: the server is back long before training ends.
            restarter.join()
            note(f"epoch 10 logged; {tracker.pending_operations} operations held")
            deadline = time.monotonic() + 90
            while tracker.pending_operations and time.monotonic() < deadline:
                time.sleep(0.2)
            note(f"held operations sent in the background ({tracker.pending_operations} left)")
    artifact = tmp_path / "experiment.yaml"
    artifact.write_text("experiment: outage\n")
    tracker.log_artifact(str(artifact))
    tracker.finish()
    note("run finished")
    try:
        tags = assert_run_complete(restarted[0].url, tracker.run_id)
    finally:
        for running in restarted:
            running.stop()
    degraded = tags[contract.TAG_TRACKING_DEGRADED]
    note(f"tag {contract.TAG_TRACKING_DEGRADED}={degraded!r}")
    print("\n".join(["outage timeline:", *timeline]))
    assert "0 metric point(s) and 0 other operation(s) still missing" in degraded
    late = int(degraded.split(" metric point(s)", 1)[0])
    assert late > 0
    assert not (tmp_path / "model" / contract.BACKLOG_FILE).exists()


def test_a_server_down_for_the_whole_run_is_healed_by_replay(server_env, tmp_path):
    port = free_port()
    model = tmp_path / "model"
    tracker = RunTracker(
        f"http://127.0.0.1:{port}", "down-whole-run", backlog_dir=str(model), flush_interval_s=0.2
    )
    started = time.monotonic()
    assert tracker.start("down", PARAMS, TAGS) is None
    for epoch in range(1, EPOCHS + 1):
        tracker.log_metrics(epoch_metrics(epoch), step=epoch)
    model.mkdir(exist_ok=True)  # the tracker made it already: its journal is there
    artifact = model / "experiment.yaml"
    artifact.write_text("experiment: down\n")
    tracker.log_artifact(str(artifact))
    tracker.finish()
    tracker.write_run_info(str(model))
    assert time.monotonic() - started < 60, "a dead server must not hold training up"

    server = MlflowServer(server_env, tmp_path / "server.log", port=port)
    try:
        server.wait_healthy()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        replays = [
            subprocess.run(
                [sys.executable, "-m", "trainer", "replay", str(model)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            for _ in range(2)
        ]
        assert [r.returncode for r in replays] == [0, 0], replays[0].stderr + replays[1].stderr
        assert '"metric_points_sent": 64' in replays[0].stdout
        assert '"lines_sent": 0' in replays[1].stdout
        run_id = MlflowClient(server.url).search_runs(
            [MlflowClient(server.url).get_experiment_by_name("down-whole-run").experiment_id]
        )
        assert len(run_id) == 1
        tags = assert_run_complete(server.url, run_id[0].info.run_id)
        assert "64 metric point(s) sent late (64 by replay)" in tags[contract.TAG_TRACKING_DEGRADED]
    finally:
        server.stop()
