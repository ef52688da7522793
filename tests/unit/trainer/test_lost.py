"""Lost runs (RUNNING, no heartbeat for too long) ended FAILED once, on real SQLite stores."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading

import pytest
from mlflow.tracking import MlflowClient

from trainer import contract, tracking
from trainer.tracking import liveness
from trainer.tracking.send import RunSender

NOW = dt.datetime(2026, 12, 2, 14, 0, 0, tzinfo=dt.UTC)
OLD = "2026-12-02T13:30:00Z"  # 30 min before NOW
FRESH = "2026-12-02T13:55:00Z"  # 5 min before NOW
REASON_OLD = (
    "lost: no heartbeat since 2026-12-02T13:30:00Z (30 min); the process died (out of memory, "
    "a preempted machine) without ending the run"
)


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def _empty_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # migrating takes seconds
    return path


@pytest.fixture
def store(_empty_store, tmp_path) -> str:
    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def _run(client, eid, name, heartbeat=None, start=NOW - dt.timedelta(hours=1), status=None):
    tags = {contract.TAG_HEARTBEAT: heartbeat} if heartbeat else {}
    run_id = client.create_run(eid, run_name=name, start_time=_ms(start), tags=tags).info.run_id
    if status:
        client.set_terminated(run_id, status)
    return run_id


# --- liveness: the rules, as plain functions ---------------------------------------------


def test_a_heartbeat_is_utc_iso_to_the_second_and_reads_back():
    moment = dt.datetime(2026, 12, 2, 15, 45, 0, 999_000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert liveness.stamp(moment) == "2026-12-02T13:45:00Z"
    assert liveness.parse_stamp("2026-12-02T13:45:00Z") == dt.datetime(
        2026, 12, 2, 13, 45, tzinfo=dt.UTC
    )
    assert liveness.parse_stamp("2026-12-02T13:45:00") == liveness.parse_stamp(
        "2026-12-02T13:45:00+00:00"
    )
    assert liveness.parse_stamp("yesterday") is None


def test_last_heard_from_is_the_heartbeat_else_the_start_time():
    start = _ms(NOW - dt.timedelta(hours=2))
    heard = liveness.last_heard_from({contract.TAG_HEARTBEAT: OLD}, start)
    assert heard == liveness.parse_stamp(OLD)
    assert liveness.last_heard_from({}, start) == NOW - dt.timedelta(hours=2)
    # An unreadable heartbeat is no sign of life; nothing known at all is not judged.
    assert liveness.last_heard_from({contract.TAG_HEARTBEAT: "?"}, start) == NOW - dt.timedelta(
        hours=2
    )
    assert liveness.last_heard_from({}, 0) is None


def test_only_a_running_run_silent_past_the_limit_is_lost():
    old, fresh = {contract.TAG_HEARTBEAT: OLD}, {contract.TAG_HEARTBEAT: FRESH}
    limit = contract.LOST_AFTER_S
    assert liveness.lost_since("RUNNING", old, 0, limit, NOW) == liveness.parse_stamp(OLD)
    assert liveness.lost_since("RUNNING", fresh, 0, limit, NOW) is None
    assert liveness.lost_since("FINISHED", old, 0, limit, NOW) is None
    assert liveness.lost_since("RUNNING", {}, 0, limit, NOW) is None
    # Exactly at the limit is not yet lost.
    at_limit = {contract.TAG_HEARTBEAT: "2026-12-02T13:45:00Z"}
    assert liveness.lost_since("RUNNING", at_limit, 0, limit, NOW) is None
    assert liveness.lost_since("RUNNING", at_limit, 0, limit - 1, NOW) is not None


# --- end_lost_runs on a real store -------------------------------------------------------


def test_a_stale_heartbeat_ends_the_run_failed_once(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    run_id = _run(client, eid, "killed-by-oom", heartbeat=OLD)

    (lost,) = tracking.end_lost_runs(client, [eid], now=NOW)
    assert (lost.run_id, lost.run_name, lost.last_heard) == (run_id, "killed-by-oom", OLD)
    assert lost.silent_s == 30 * 60 and lost.reason == REASON_OLD
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FAILED
    assert run.info.end_time == lost.end_time
    assert run.data.tags[contract.TAG_LOST] == OLD
    assert run.data.tags[contract.TAG_FAILURE_REASON] == REASON_OLD

    # Once: a second call (even much later) finds nothing to do and changes nothing.
    assert tracking.end_lost_runs(client, [eid], now=NOW + dt.timedelta(days=1)) == []
    again = client.get_run(run_id)
    assert again.info.end_time == run.info.end_time and again.data.tags == run.data.tags


def test_a_fresh_heartbeat_and_ended_runs_are_left_alone(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    fresh = _run(client, eid, "alive", heartbeat=FRESH)
    finished = _run(client, eid, "finished", heartbeat=OLD, status=contract.STATUS_FINISHED)
    assert tracking.end_lost_runs(client, [eid], now=NOW) == []
    assert client.get_run(fresh).info.status == contract.STATUS_RUNNING
    assert contract.TAG_LOST not in client.get_run(fresh).data.tags
    assert client.get_run(finished).info.status == contract.STATUS_FINISHED
    # The limit is the caller's: five minutes of silence is too long for a caller saying so.
    (lost,) = tracking.end_lost_runs(client, [eid], lost_after_s=4 * 60, now=NOW)
    assert lost.run_id == fresh and lost.reason.startswith(
        f"lost: no heartbeat since {FRESH} (5 min)"
    )


def test_a_run_without_a_heartbeat_is_judged_by_its_start_time(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    started = NOW - dt.timedelta(minutes=20)
    old_run = _run(client, eid, "no-heartbeat", start=started)
    young_run = _run(client, eid, "just-started", start=NOW - dt.timedelta(minutes=1))
    (lost,) = tracking.end_lost_runs(client, [eid], now=NOW)
    assert lost.run_id == old_run and lost.last_heard == "2026-12-02T13:40:00Z"
    assert client.get_run(old_run).data.tags[contract.TAG_LOST] == "2026-12-02T13:40:00Z"
    assert client.get_run(young_run).info.status == contract.STATUS_RUNNING
    # A judging time in the future makes any silence long.
    (later,) = tracking.end_lost_runs(client, [eid], now=NOW + dt.timedelta(hours=1))
    assert later.run_id == young_run


def test_only_the_named_experiments_are_judged(store):
    client = MlflowClient(store)
    mine, other = client.create_experiment("mine"), client.create_experiment("other")
    _run(client, mine, "a", heartbeat=OLD)
    theirs = _run(client, other, "b", heartbeat=OLD)
    assert len(tracking.end_lost_runs(client, [mine], now=NOW)) == 1
    assert client.get_run(theirs).info.status == contract.STATUS_RUNNING
    assert tracking.end_lost_runs(client, [], now=NOW) == []


class _OthersFirst(MlflowClient):
    """A real client; another caller ends each run right after this one found it RUNNING."""

    def __init__(self, uri: str, other: MlflowClient, status: str | None):
        super().__init__(uri)
        self.other, self.status = other, status

    def search_runs(self, *args, **kwargs):
        page = super().search_runs(*args, **kwargs)
        for run in page:
            if self.status is None:
                self.other.delete_run(run.info.run_id)
            else:
                self.other.set_terminated(run.info.run_id, self.status)
        return page


@pytest.mark.parametrize("status", [contract.STATUS_KILLED, None])
def test_a_run_ended_or_deleted_in_between_is_left_as_the_other_left_it(store, status):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    run_id = _run(client, eid, "raced", heartbeat=OLD)
    assert tracking.end_lost_runs(_OthersFirst(store, client, status), [eid], now=NOW) == []
    run = client.get_run(run_id)
    assert contract.TAG_LOST not in run.data.tags
    if status:
        assert run.info.status == status


def test_two_callers_at_once_both_return_and_the_run_ends_lost(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    ids = [_run(client, eid, f"r{i}", heartbeat=OLD) for i in range(5)]
    results, errors = [], []

    def call():
        try:
            results.append(tracking.end_lost_runs(MlflowClient(store), [eid], now=NOW))
        except Exception as err:  # noqa: BLE001 - what the test asserts is absent
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 2
    for run_id in ids:
        run = client.get_run(run_id)
        if run.info.status == contract.STATUS_RUNNING:
            # SQLite may have kept one caller out (locked): the other, or the next call, ends it.
            continue
        assert run.info.status == contract.STATUS_FAILED
        assert run.data.tags[contract.TAG_LOST] == OLD
    tracking.end_lost_runs(client, [eid], now=NOW)
    assert {client.get_run(i).info.status for i in ids} == {contract.STATUS_FAILED}


def test_an_outage_is_logged_and_never_fails_the_caller(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    client = MlflowClient("http://127.0.0.1:9")  # nothing listens on the discard port
    with caplog.at_level(logging.ERROR, logger="trainer.tracking.lost"):
        assert tracking.end_lost_runs(client, ["0"], now=NOW) == []
    assert "Lost runs not ended: MLflow did not answer" in caplog.text


# --- a retried step takes the run over: no longer lost -----------------------------------


def _create_op(key: str) -> dict:
    return {"op": "create_run", "experiment": "exp", "run_name": "r", "run_key": key, "tags": {}}


def test_taking_a_lost_run_over_clears_lost_and_makes_it_alive(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    run_id = client.create_run(
        eid, tags={contract.TAG_RUN_KEY: "job/train-1", contract.TAG_HEARTBEAT: OLD}
    ).info.run_id
    tracking.end_lost_runs(client, [eid], now=NOW)
    assert client.get_run(run_id).data.tags[contract.TAG_LOST] == OLD

    sender = RunSender(client, store)
    sender.send(_create_op("job/train-1"))
    assert sender.run_id == run_id and sender.reused
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_RUNNING
    assert contract.TAG_LOST not in run.data.tags
    heard = liveness.parse_stamp(run.data.tags[contract.TAG_HEARTBEAT])
    assert abs((dt.datetime.now(dt.UTC) - heard).total_seconds()) < 60
    # Alive now: a report ending lost runs leaves it alone.
    assert tracking.end_lost_runs(client, [eid]) == []


def test_taking_over_a_run_that_was_never_lost_is_no_error(store):
    client = MlflowClient(store)
    eid = client.create_experiment("exp")
    run_id = _run(client, eid, "failed", status=contract.STATUS_FAILED)
    client.set_tag(run_id, contract.TAG_RUN_KEY, "job/train-2")
    sender = RunSender(client, store)
    sender.send(_create_op("job/train-2"))
    run = client.get_run(run_id)
    assert sender.run_id == run_id and run.info.status == contract.STATUS_RUNNING
    assert contract.TAG_LOST not in run.data.tags
