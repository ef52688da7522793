"""Start-up settings for the MLflow server's Python processes.

``entrypoint.sh`` puts this folder first on ``PYTHONPATH``, so every Python process of the
server (the ``mlflow server`` launcher, the uvicorn supervisor and each worker it spawns)
imports this module at start-up. It does two things, each measured in bench/RESULTS.md:

1. Garbage-collector thresholds. A ``runs/search`` page of 1,000 runs builds ~50,000
   SQLAlchemy objects, and with CPython's default thresholds (700, 10, 10) the cyclic
   collector walks the server's whole heap many times while it does so. Raising them cuts the
   server's time for that page from ~3.6 s to ~2.2 s. The collector still runs; garbage in
   cycles lives a little longer (a few MB at most).
   ``MLFLOW_GC_THRESHOLD``: three comma-separated integers for ``gc.set_threshold`` (default
   ``50000,20,20``), or ``default`` to keep CPython's own.

2. TCP_NODELAY on keep-alive connections. With ``--workers`` > 1 uvicorn binds the listening
   socket itself with ``proto`` 0, accepted sockets inherit it, and asyncio enables
   TCP_NODELAY only when ``proto == IPPROTO_TCP`` (uvicorn issue #3149). Nagle's algorithm
   then holds each response's last segment until the client's delayed ACK: every request on a
   reused connection (what MlflowClient does) waits ~40 ms more. asyncio's check is widened
   to ``proto`` 0, which for an AF_INET/AF_INET6 stream socket is TCP.
   ``MLFLOW_TCP_NODELAY``: ``false`` leaves asyncio as it is (default ``true``).

A bad value is reported on stderr and ignored: a tuning knob never stops the server.
"""

import gc
import os
import sys

DEFAULT_THRESHOLD = (50000, 20, 20)


def _warn(message: str) -> None:
    print(f"sitecustomize: {message}", file=sys.stderr)


def _threshold(value: str | None) -> tuple[int, ...] | None:
    if value is None or not value.strip():
        return DEFAULT_THRESHOLD
    if value.strip().lower() == "default":
        return None
    try:
        parts = tuple(int(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts):
        _warn(
            f"MLFLOW_GC_THRESHOLD must be three non-negative integers like '50000,20,20' or "
            f"'default', got {value!r}; keeping {gc.get_threshold()}"
        )
        return None
    return parts


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    _warn(f"{name} must be true or false, got {value!r}; using {str(default).lower()}")
    return default


def _nodelay_for_prebound_sockets() -> None:
    import asyncio.base_events
    import socket

    def _set_nodelay(sock: socket.socket) -> None:
        if (
            sock.family in {socket.AF_INET, socket.AF_INET6}
            and sock.type == socket.SOCK_STREAM
            and sock.proto in {0, socket.IPPROTO_TCP}
        ):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    if hasattr(socket, "TCP_NODELAY"):
        asyncio.base_events._set_nodelay = _set_nodelay


_wanted = _threshold(os.environ.get("MLFLOW_GC_THRESHOLD"))
if _wanted is not None:
    gc.set_threshold(*_wanted)
if _flag("MLFLOW_TCP_NODELAY", True):
    _nodelay_for_prebound_sockets()
