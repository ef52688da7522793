"""The tracker's journal and heartbeat: what a killed process logged is replayed once.

Real SQLite MLflow stores and real processes killed with SIGKILL (what the kernel's OOM
killer and a preempted machine do: no handler runs, nothing is flushed by Python).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow.tracking import MlflowClient

from trainer import contract
from trainer.__main__ import main as trainer_main
from trainer.tracking import backlog as tracking_backlog
from trainer.tracking.tracker import RunTracker

REPO_ROOT = Path(__file__).resolve().parents[3]

# A tracker that logs five epochs, gets two of them sent and is SIGKILLed with three queued.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from trainer.tracking.tracker import RunTracker

    store, folder = sys.argv[1], sys.argv[2]
    tracker = RunTracker(store, "exp", backlog_dir=folder, flush_interval_s=3600)
    tracker.start("killed", {"epochs": 5}, {"model_type": "two_tower"}, run_key="key-1")
    for epoch in range(1, 6):
        tracker.log_metrics({"loss": 1.0 / epoch, "val_recall_at_10": epoch / 10}, step=epoch)
        if epoch == 2:
            assert tracker.flush()
    open(os.path.join(folder, "config.yaml"), "w").write("a: 1\\n")
    tracker.log_artifact(os.path.join(folder, "config.yaml"))
    print(tracker.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def run_killed(store: str, folder: Path, script: str = KILLED) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, store, str(folder)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout.split()[0]


def points(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_healthy_run_leaves_a_journal_marked_sent(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = RunTracker(store, "exp", backlog_dir=str(tmp_path / "model"))
    tracker.start("a", {"epochs": 2}, {}, run_key="k")
    tracker.log_metrics({"loss": 0.5}, step=1)
    tracker.finish()

    journal = tmp_path / "model" / contract.JOURNAL_FILE
    ops = [json.loads(line)["op"] for line in journal.read_text().splitlines()]
    assert ops == ["session", "create_run", "params", "metrics", "terminate"]
    assert tracking_backlog.read_progress(str(journal)) == len(ops)
    assert tracking_backlog.unsent_lines(str(tmp_path / "model")) == 0
    result = tracking_backlog.replay(str(tmp_path / "model"))
    assert result.ops_sent == 0 and result.ended == []
    run = MlflowClient(store).get_run(tracker.run_id)
    assert run.info.status == contract.STATUS_FINISHED
    beat = dt.datetime.fromisoformat(run.data.tags[contract.TAG_HEARTBEAT])
    assert abs((dt.datetime.now(dt.UTC) - beat).total_seconds()) < 60


def test_what_a_killed_process_logged_is_replayed_once_and_its_run_ended(tmp_path, capsys):
    store, folder = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "model"
    run_id = run_killed(store, folder)
    client = MlflowClient(store)
    # Before the replay: only what was flushed, and the run is left RUNNING.
    assert points(client, run_id, "loss") == [1, 2]
    assert client.get_run(run_id).info.status == contract.STATUS_RUNNING
    assert tracking_backlog.unsent_lines(str(folder)) == 4  # 3 metric ops and the artifact

    assert trainer_main(["replay", str(folder)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_ids"] == [run_id] and out["metric_points_sent"] == 6
    assert out["ended_failed"] == [run_id]
    for key in ("loss", "val_recall_at_10"):
        assert points(client, run_id, key) == [1, 2, 3, 4, 5]
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FAILED
    assert "died without ending the run" in run.data.tags[contract.TAG_FAILURE_REASON]
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]

    # Again: nothing is sent twice, the run is not touched.
    again = tracking_backlog.replay(str(folder))
    assert again.ops_sent == 0 and again.ended == []
    # Even without the progress record, a replay is careful: each point stays once.
    os.remove(str(folder / contract.JOURNAL_FILE) + tracking_backlog.PROGRESS_SUFFIX)
    tracking_backlog.replay(str(folder))
    assert points(client, run_id, "loss") == [1, 2, 3, 4, 5]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_retried_step_takes_the_killed_run_over(tmp_path):
    store, folder = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "model"
    run_id = run_killed(store, folder)
    # What the retried step does: replay without ending the run, then reuse it by its key.
    result = tracking_backlog.replay(str(folder), end_unfinished=False)
    assert result.ended == []
    tracker = RunTracker(store, "exp", backlog_dir=str(folder))
    assert tracker.start("retry", {"epochs": 5}, {}, run_key="key-1") == run_id
    tracker.log_metrics({"loss": 0.1}, step=6)
    tracker.finish()

    client = MlflowClient(store)
    assert points(client, run_id, "loss") == [1, 2, 3, 4, 5, 6]
    assert client.get_run(run_id).info.status == contract.STATUS_FINISHED
    # The killed session is followed by the retry's: a later replay never ends the run.
    assert tracking_backlog.replay(str(folder)).ended == []
    assert client.get_run(run_id).info.status == contract.STATUS_FINISHED


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_session_appends_cleanly(tmp_path):
    store, folder = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "model"
    run_id = run_killed(store, folder)
    journal = folder / contract.JOURNAL_FILE
    with open(journal, "a", encoding="utf-8") as f:
        f.write('{"op": "metrics", "metrics": [["loss", 9.0')  # cut mid-write
    tracker = RunTracker(store, "exp", backlog_dir=str(folder))
    tracker.resume(run_id)
    tracker.log_metrics({"test_recall_at_10": 0.25})
    tracker.finish()

    lines = journal.read_text().splitlines()
    assert lines[-5].endswith("9.0") and json.loads(lines[-4])["op"] == "session"
    tracking_backlog.replay(str(folder))
    client = MlflowClient(store)
    assert points(client, run_id, "loss") == [1, 2, 3, 4, 5]
    assert 9.0 not in [m.value for m in client.get_metric_history(run_id, "loss")]
    assert client.get_run(run_id).data.metrics["test_recall_at_10"] == 0.25


# A tracker that got everything it journaled sent, then is SIGKILLed: nothing is left to
# replay, but its run is still RUNNING (a kill between an epoch's checkpoint and its points).
KILLED_ALL_SENT = textwrap.dedent(
    """
    import os, signal, sys
    from trainer.tracking.tracker import RunTracker

    store, folder = sys.argv[1], sys.argv[2]
    tracker = RunTracker(store, "exp", backlog_dir=folder, flush_interval_s=3600)
    tracker.start("killed", {"epochs": 2}, {}, run_key="key-2")
    tracker.log_metrics({"loss": 0.5}, step=1)
    assert tracker.flush()
    print(tracker.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_process_that_had_sent_everything_still_gets_its_run_ended(tmp_path):
    store, folder = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "model"
    run_id = run_killed(store, folder, KILLED_ALL_SENT)
    client = MlflowClient(store)
    assert tracking_backlog.unsent_lines(str(folder)) == 0  # nothing left to send
    assert client.get_run(run_id).info.status == contract.STATUS_RUNNING

    result = tracking_backlog.replay(str(folder))
    assert result.ops_sent == 0 and result.ended == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FAILED
    assert "died without ending the run" in run.data.tags[contract.TAG_FAILURE_REASON]
    assert points(client, run_id, "loss") == [1]
    assert tracking_backlog.replay(str(folder)).ended == []  # once
