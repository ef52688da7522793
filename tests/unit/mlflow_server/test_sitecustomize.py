"""The server processes' start-up settings: mlflow_server/python/sitecustomize.py, run in a
fresh interpreter (GC thresholds, TCP_NODELAY)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SITE_DIR = Path(__file__).resolve().parents[3] / "mlflow_server" / "python"
PRINT_THRESHOLD = "import gc; print(gc.get_threshold())"


def _run(code: str, **env_vars: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; site imports sitecustomize from PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTHONPATH"}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def _threshold_with(value: str | None) -> subprocess.CompletedProcess:
    extra = {} if value is None else {"MLFLOW_GC_THRESHOLD": value}
    return _run(PRINT_THRESHOLD, PYTHONPATH=str(SITE_DIR), **extra)


def _python_default() -> str:
    return _run(PRINT_THRESHOLD).stdout.strip()


def test_default_raises_the_thresholds():
    assert _threshold_with(None).stdout.strip() == "(50000, 20, 20)"
    assert _threshold_with("").stdout.strip() == "(50000, 20, 20)"


def test_explicit_values_and_default_keyword():
    assert _threshold_with("1000, 5, 5").stdout.strip() == "(1000, 5, 5)"
    assert _threshold_with("default").stdout.strip() == _python_default()


@pytest.mark.parametrize("bad", ["fast", "1000,5", "1000,-1,5", "1,2,3,4"])
def test_a_bad_value_is_reported_and_ignored(bad):
    result = _threshold_with(bad)
    assert result.stdout.strip() == _python_default()
    assert "MLFLOW_GC_THRESHOLD" in result.stderr and repr(bad) in result.stderr


# The accepted socket of an asyncio server listening on a socket bound the way uvicorn's
# supervisor binds it for --workers N (proto left at 0): does it have TCP_NODELAY?
ACCEPTED_NODELAY = """
import asyncio, socket

async def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    assert listener.proto == 0
    seen = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    port = listener.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    print(int(bool(await seen)))
    writer.close()
    server.close()

asyncio.run(main())
"""


def test_prebound_listener_gets_tcp_nodelay():
    # Without the module: asyncio leaves Nagle on (the uvicorn --workers N bug) ...
    assert _run(ACCEPTED_NODELAY).stdout.strip() == "0"
    # ... with it, as in every server process, the accepted socket has TCP_NODELAY.
    assert _run(ACCEPTED_NODELAY, PYTHONPATH=str(SITE_DIR)).stdout.strip() == "1"
    off = _run(ACCEPTED_NODELAY, PYTHONPATH=str(SITE_DIR), MLFLOW_TCP_NODELAY="false")
    assert off.stdout.strip() == "0"
    bad = _run(ACCEPTED_NODELAY, PYTHONPATH=str(SITE_DIR), MLFLOW_TCP_NODELAY="maybe")
    assert bad.stdout.strip() == "1" and "MLFLOW_TCP_NODELAY" in bad.stderr
