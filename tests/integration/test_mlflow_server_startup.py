"""entrypoint.sh start-up: fast, clear failures and migrations that never race."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import ENTRYPOINT, MlflowServer, entrypoint_env, free_port

pytestmark = pytest.mark.integration


def run_entrypoint(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ENTRYPOINT)],
        env=entrypoint_env(HOST="127.0.0.1", PORT=str(free_port()), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_database_that_does_not_answer_fails_the_start_at_once(tmp_path):
    uri = f"postgresql://mlflow:s3cret@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()
    result = run_entrypoint(MLFLOW_BACKEND_STORE_URI=uri, MLFLOW_ARTIFACT_ROOT=str(tmp_path))
    assert result.returncode == 64
    assert time.monotonic() - started < 60
    assert "cannot connect to the tracking database postgresql+psycopg2://mlflow:***@" in (
        result.stderr
    )
    assert "s3cret" not in result.stderr + result.stdout


def test_an_artifact_root_that_cannot_be_written_fails_the_start(postgres_uri, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    root = tmp_path / "a-file" / "artifacts"
    result = run_entrypoint(MLFLOW_BACKEND_STORE_URI=postgres_uri, MLFLOW_ARTIFACT_ROOT=str(root))
    assert result.returncode == 64, result.stderr
    assert f"artifact root {root} is not writable" in result.stderr


def test_instances_starting_together_on_an_empty_database_all_come_up(postgres_dsn, tmp_path):
    import psycopg2

    name = f"fresh_{time.time_ns()}"
    admin = psycopg2.connect(postgres_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    uri = postgres_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://")
    env = {"MLFLOW_BACKEND_STORE_URI": f"{uri}/{name}", "MLFLOW_ARTIFACT_ROOT": str(tmp_path)}
    servers = [MlflowServer(env, tmp_path / f"server-{i}.log") for i in range(3)]
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.wait_healthy(), servers))
    finally:
        for server in servers:
            server.stop()
    fresh = psycopg2.connect(f"{postgres_dsn.rsplit('/', 1)[0]}/{name}")
    with fresh, fresh.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM alembic_version")
        assert cursor.fetchone()[0] == 1
    fresh.close()
    admin.close()
