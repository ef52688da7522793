"""The MLflow server as deployed: mlflow_server/entrypoint.sh in front of a real PostgreSQL.

Everything goes through the HTTP API with MlflowClient, then the database is read directly
to prove the data landed in PostgreSQL, not in some local fallback store.
"""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import ENTRYPOINT, REPO_ROOT, entrypoint_env

pytestmark = pytest.mark.integration

METRIC_HISTORY = [(0, 1.5), (1, 0.9), (2, 0.61), (3, 0.48), (4, 0.45)]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if match := re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line):
            pins[re.sub(r"[-_.]+", "-", match[1].split("[")[0]).lower()] = match[2]
    return pins


def test_server_requirements_match_constraints():
    """The image pins the same mlflow, psycopg2 and GCS client versions as the rest of the repo."""
    image = _pins(REPO_ROOT / "mlflow_server" / "requirements.txt")
    constraints = _pins(REPO_ROOT / "constraints.txt")
    assert {"mlflow", "psycopg2-binary", "google-cloud-storage"} <= image.keys()
    assert {name: constraints.get(name) for name in image} == image


def run_entrypoint(env: dict) -> subprocess.CompletedProcess:
    """Runs entrypoint.sh with ``env`` and returns what it did (expected to exit early)."""
    return subprocess.run(
        ["bash", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("missing", ["MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACT_ROOT"])
def test_entrypoint_names_the_missing_variable(missing, tmp_path):
    env = entrypoint_env(
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path}/mlflow.db",
        MLFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
    )
    del env[missing]

    result = run_entrypoint(env)

    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert not (tmp_path / "mlflow.db").exists(), "nothing may start before the check"


def test_entrypoint_rejects_a_non_database_store(tmp_path):
    env = entrypoint_env(MLFLOW_BACKEND_STORE_URI=str(tmp_path), MLFLOW_ARTIFACT_ROOT=str(tmp_path))

    result = run_entrypoint(env)

    assert result.returncode != 0
    assert "must be a database URI" in result.stderr


def _log_run(client, experiment_name: str, artifact_dir: Path) -> str:
    experiment_id = client.create_experiment(experiment_name)
    run = client.create_run(
        experiment_id, run_name="two-tower-smoke", tags={"model_family": "two_tower"}
    )
    run_id = run.info.run_id
    client.log_param(run_id, "embedding_dim", "64")
    client.log_param(run_id, "learning_rate", "0.05")
    client.set_tag(run_id, "dataset", "online_retail")
    for step, value in METRIC_HISTORY:
        client.log_metric(run_id, "loss", value, step=step)
    (artifact_dir / "summary.json").write_text('{"recall_at_100": 0.42}')
    client.log_artifact(run_id, str(artifact_dir / "summary.json"), artifact_path="eval")
    client.set_terminated(run_id)
    return run_id


def test_run_round_trips_through_server_into_postgres(mlflow_server, postgres_dsn, tmp_path):
    import psycopg2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    run_id = _log_run(client, "server-round-trip", tmp_path)

    run = client.get_run(run_id)
    assert run.data.params == {"embedding_dim": "64", "learning_rate": "0.05"}
    assert run.data.tags["dataset"] == "online_retail"
    assert run.data.tags["model_family"] == "two_tower"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == METRIC_HISTORY

    # Artifacts are proxied: the client sees mlflow-artifacts:/, the server wrote the bytes.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert [f.path for f in client.list_artifacts(run_id, "eval")] == ["eval/summary.json"]
    downloaded = client.download_artifacts(run_id, "eval/summary.json", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == '{"recall_at_100": 0.42}'
    stored = list(Path(mlflow_server.env["MLFLOW_ARTIFACT_ROOT"]).rglob("summary.json"))
    assert len(stored) == 1 and run_id in stored[0].parts

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT r.name, r.status, e.name FROM runs r JOIN experiments e USING (experiment_id)"
            " WHERE r.run_uuid = %s",
            (run_id,),
        )
        assert cur.fetchall() == [("two-tower-smoke", "FINISHED", "server-round-trip")]
        cur.execute("SELECT key, value FROM params WHERE run_uuid = %s ORDER BY key", (run_id,))
        assert cur.fetchall() == [("embedding_dim", "64"), ("learning_rate", "0.05")]
        cur.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'loss' ORDER BY step",
            (run_id,),
        )
        assert cur.fetchall() == METRIC_HISTORY
        cur.execute("SELECT value FROM tags WHERE run_uuid = %s AND key = 'dataset'", (run_id,))
        assert cur.fetchall() == [("online_retail",)]
    conn.close()


def test_restart_on_existing_schema_keeps_runs_and_hides_password(
    mlflow_server, mlflow_server_factory, postgres_uri, tmp_path
):
    """A Cloud Run cold start: db upgrade on a live schema is a no-op and the data is still there.

    The restart is given the plain postgresql:// form a Secret Manager URI would have.
    """
    from mlflow.tracking import MlflowClient

    run_id = _log_run(MlflowClient(tracking_uri=mlflow_server.url), "survives-restart", tmp_path)
    # Trust authentication ignores the password; it is here to check that the log masks it.
    with_password = postgres_uri.replace(
        "postgresql+psycopg2://mlflow@", "postgresql://mlflow:s3cret-pw@", 1
    )

    restarted = mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": with_password,
            "MLFLOW_ARTIFACT_ROOT": mlflow_server.env["MLFLOW_ARTIFACT_ROOT"],
        }
    )

    run = MlflowClient(tracking_uri=restarted.url).get_run(run_id)
    assert run.data.params["embedding_dim"] == "64"
    log = restarted.log()
    assert "mlflow db upgrade postgresql+psycopg2://mlflow:***@127.0.0.1" in log
    assert "s3cret-pw" not in log


def _status(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_cloud_run_host_header_is_accepted_and_others_rejected(mlflow_server_factory, tmp_path):
    """Cloud Run forwards Host: <service>-<project number>.<region>.run.app; mlflow 3.x must accept it."""
    server = mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
            "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "K_SERVICE": "mlflow-server",
            "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow.example.com",
        }
    )
    search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"

    assert _status(search, "mlflow-server-555035914949.europe-central2.run.app") == 200
    assert _status(search, "mlflow-server-abc123xyz-lm.a.run.app") == 200
    assert _status(search, "mlflow.example.com") == 200, "a custom domain adds to the run.app names"
    assert _status(search, "evil.example.com") == 403
    assert _status(search, "other-service-555035914949.europe-central2.run.app") == 403
    assert _status(f"{server.url}/health", "evil.example.com") == 200, (
        "probes need /health on any host"
    )


def _group_environments(pgid: int) -> list[dict[str, str]]:
    """The environment of every process in a process group (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            raw = (proc / "environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        found.append(dict(e.split("=", 1) for e in raw.decode().split("\0") if "=" in e))
    return found


def test_every_server_process_loads_the_start_up_settings(mlflow_server_factory, tmp_path):
    server = mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
            "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
            "MLFLOW_WORKERS": "2",
        }
    )
    envs = _group_environments(server.process.pid)
    site_dir = str(REPO_ROOT / "mlflow_server" / "python")
    # bash exec'd the mlflow launcher; it runs the uvicorn supervisor, which spawns 2 workers.
    assert len(envs) >= 4, envs
    assert all(e.get("PYTHONPATH", "").split(":")[0] == site_dir for e in envs)


def test_the_report_lists_runs_through_the_servers_column_listing(mlflow_server, monkeypatch):
    """The deployed server serves reporting.listing's route; the report reads it, not runs/search,
    and gets exactly what runs/search gives (NaN, infinities, paging, filters, bad requests)."""
    import math

    import requests
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from reporting import listing, query
    from reporting.records import records_from_json

    client = MlflowClient(tracking_uri=mlflow_server.url)
    eid = client.create_experiment("listing-route")
    for i in range(5):
        run = client.create_run(eid, run_name=f"r{i}", start_time=1_700_000_000_000 + i)
        metrics = [Metric("loss", 1.0 / (e + 1), 0, e) for e in range(3)]
        metrics += [Metric("best_val_recall_at_100", 0.1 * i, 0, 0), Metric("odd", math.nan, 0, 0)]
        metrics += [Metric("huge", math.inf, 0, 0)]
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param("seed", str(i))],
            tags=[RunTag("dataset", "online_retail")],
        )  # fmt: skip
    monkeypatch.setattr(query, "SEARCH_PAGE_SIZE", 2)  # three pages of the route
    listed = query.list_runs_http(client, eid)
    assert listed is not None and len(listed) == 5
    # The reader's own path: the route's pages read straight into records, two at a time.
    direct, filtered = query.search_all_runs(client, mlflow_server.url, eid)
    assert filtered  # the route filters
    monkeypatch.setattr(query, "listing_pages", lambda *a, **k: None)
    searched, filtered = query.search_all_runs(client, mlflow_server.url, eid)  # runs/search
    assert not filtered  # runs/search answers with every metric
    monkeypatch.undo()
    fast = records_from_json(listed, [])
    assert [repr(r) for r in direct] == [repr(r) for r in fast]  # NaN != NaN, reprs are equal
    assert [r.run_id for r in fast] == [r.run_id for r in searched]
    for a, b in zip(fast, searched, strict=True):
        assert (a.name, a.status, a.start_time, a.params, a.tags) == (
            b.name, b.status, b.start_time, b.params, b.tags,
        )  # fmt: skip
        assert a.metric_steps == b.metric_steps and a.metrics.keys() == b.metrics.keys()
        assert math.isnan(a.metrics["odd"]) and a.metrics["huge"] == math.inf
        assert {k: v for k, v in a.metrics.items() if k != "odd"} == {
            k: v for k, v in b.metrics.items() if k != "odd"
        }
    only = query.list_runs_http(client, eid, metric_keys=["best_*"], run_ids=[fast[0].run_id])
    assert [m["key"] for m in only[0]["data"]["metrics"]] == ["best_val_recall_at_100"]

    url = mlflow_server.url + listing.LISTING_ENDPOINT
    bad = requests.post(url, json={"experiment_id": eid, "max_results": 0}, timeout=10)
    assert bad.status_code == 400 and "max_results" in bad.json()["message"]
    # The report's reader takes the route: no runs/search request at all.
    from tests.integration.conftest import count_requests

    with count_requests() as counter:
        data = query.ExperimentReader(mlflow_server.url).read("listing-route")
    assert len(data.runs) == 5
    assert not any("runs/search" in endpoint for endpoint in counter), dict(counter)
    assert counter[listing.LISTING_ENDPOINT.lstrip("/")] == 1, dict(counter)
