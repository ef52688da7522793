"""Integration fixtures: a real PostgreSQL on 127.0.0.1 and the MLflow server in front of it.

``postgres_uri`` starts a throwaway PostgreSQL cluster once per session (Debian's binaries
under /usr/lib/postgresql/*/bin). ``mlflow_server_url`` runs ``mlflow_server/entrypoint.sh``,
the script the Cloud Run image runs, against that database. Without PostgreSQL the tests
that use them skip, unless ``CI`` or ``REQUIRE_POSTGRES`` is set: then they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "mlflow_server" / "entrypoint.sh"
PG_USER = "mlflow"
PG_DB = "mlflow"
# A fresh server runs its migrations and starts uvicorn workers: seconds, not minutes.
SERVER_START_TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_required() -> bool:
    return any(os.environ.get(name) for name in ("CI", "REQUIRE_POSTGRES"))


def _missing(reason: str) -> None:
    if _postgres_required():
        pytest.fail(
            f"{reason} (CI or REQUIRE_POSTGRES is set, so this is an error)",
            pytrace=False,
        )
    pytest.skip(reason)


def find_postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory holding initdb and postgres, if any."""

    def major(path: str) -> float:
        version = Path(path).parent.name
        return float(version) if version.replace(".", "", 1).isdigit() else -1.0

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        if all(
            (Path(bindir) / tool).is_file() for tool in ("initdb", "postgres", "pg_ctl", "createdb")
        ):
            return Path(bindir)
    return None


def _as_postgres_user(argv: list[str], os_user: str | None) -> list[str]:
    # PostgreSQL refuses to run as root; as root we drop to an unprivileged OS user.
    return ["runuser", "-u", os_user, "--", *argv] if os_user else argv


def _os_user_for_postgres() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    _missing(
        "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL"
    )
    return None  # unreachable: _missing raises


def _run(argv: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}): {' '.join(argv)}\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL database as a SQLAlchemy URI (MLflow tracking/backend store URI).

    Yields ``postgresql+psycopg2://mlflow@127.0.0.1:PORT/mlflow`` (trust auth, no password).
    """
    bindir = find_postgres_bindir()
    if bindir is None:
        _missing(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); apt-get install postgresql"
        )
    os_user = _os_user_for_postgres()
    if os_user and shutil.which("runuser") is None:
        _missing(
            "running as root but 'runuser' is missing, so PostgreSQL cannot be started unprivileged"
        )

    # Not under pytest's tmp tree: its 0700 directories would shut out the unprivileged user.
    root = Path(tempfile.mkdtemp(prefix="b2b-recs-postgres-"))
    data_dir, socket_dir, log_file = (
        root / "data",
        root / "socket",
        root / "postgres.log",
    )
    socket_dir.mkdir()
    if os_user:
        entry = pwd.getpwnam(os_user)
        for path in (root, socket_dir):
            shutil.chown(path, entry.pw_uid, entry.pw_gid)

    run_kwargs = {"cwd": root, "timeout": 120}
    port = free_port()
    started = False
    try:
        _run(
            _as_postgres_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                ]
                + ["--encoding=UTF8", "--locale=C", "--no-sync"],
                os_user,
            ),
            "initdb",
            **run_kwargs,
        )
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir} -F -c fsync=off -c full_page_writes=off"
        start = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(log_file),
            "-o",
            options,
        ]
        try:
            _run(
                _as_postgres_user([*start, "-w", "-t", "60", "start"], os_user),
                "pg_ctl start",
                **run_kwargs,
            )
        except RuntimeError as error:
            server_log = log_file.read_text(errors="replace") if log_file.exists() else "(no log)"
            raise RuntimeError(f"{error}\npostgres.log:\n{server_log}") from None
        started = True
        _run(
            _as_postgres_user(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    PG_USER,
                    PG_DB,
                ],
                os_user,
            ),
            "createdb",
            **run_kwargs,
        )
        # Name the driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, not installed.
        yield f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/{PG_DB}"
    finally:
        if started:
            stop = [
                str(bindir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-m",
                "fast",
                "-w",
                "stop",
            ]
            subprocess.run(
                _as_postgres_user(stop, os_user),
                capture_output=True,
                cwd=root,
                timeout=120,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_uri: str) -> str:
    """The same database as a libpq URI, for ``psycopg2.connect``."""
    return postgres_uri.replace("postgresql+psycopg2://", "postgresql://", 1)


def entrypoint_env(**env: str) -> dict[str, str]:
    """Environment for running entrypoint.sh: ``env`` plus a PATH whose ``mlflow`` is ours."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"PATH": path, **env}


class MlflowServer:
    """A running ``mlflow_server/entrypoint.sh``; stop() ends its whole process group."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None):
        self.env = env
        self.port = port or free_port()  # a port of its own: a restarted server reuses it
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MLFLOW_WORKERS": env.get("MLFLOW_WORKERS", "1"),
            "PATH": entrypoint_env()["PATH"],
        }
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["bash", str(ENTRYPOINT)],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"entrypoint.sh exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"MLflow server not healthy after {timeout_s}s:\n{self.log()}")

    def kill(self) -> None:
        """Ends the whole process group at once, as a crash or an evicted instance would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def count_requests() -> Iterator[Counter]:
    """Count every HTTP request this process sends through ``requests``, by URL path."""
    import requests

    counter: Counter = Counter()
    original = requests.Session.request

    def counting(self, method, url, *args, **kwargs):
        counter[url.split("?", 1)[0].split("/", 3)[-1]] += 1
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        requests.Session.request = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def mlflow_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start entrypoint.sh with extra environment; returns a healthy MlflowServer."""
    servers: list[MlflowServer] = []

    def start(env: dict[str, str]) -> MlflowServer:
        log_dir = tmp_path_factory.mktemp("mlflow-server")
        server = MlflowServer(env, log_dir / "server.log")
        servers.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(
    postgres_uri: str, mlflow_server_factory, tmp_path_factory: pytest.TempPathFactory
) -> MlflowServer:
    """The MLflow server backed by ``postgres_uri``, proxying artifacts to a local directory."""
    artifact_root = tmp_path_factory.mktemp("mlflow-artifacts")
    return mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": postgres_uri,
            "MLFLOW_ARTIFACT_ROOT": str(artifact_root),
        }
    )


@pytest.fixture(scope="session")
def mlflow_server_url(mlflow_server: MlflowServer) -> str:
    """``http://127.0.0.1:PORT`` of a running MLflow server backed by PostgreSQL."""
    return mlflow_server.url
