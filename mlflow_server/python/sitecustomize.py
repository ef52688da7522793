"""Garbage-collector thresholds for the MLflow server's processes.

``entrypoint.sh`` puts this folder first on ``PYTHONPATH``, so every Python process of the
server (the ``mlflow server`` launcher and each uvicorn worker it spawns) imports this module at
start-up.

Why: a ``runs/search`` page of 1,000 runs builds ~50,000 SQLAlchemy objects, and with
CPython's default thresholds (700, 10, 10) the cyclic collector runs a full collection over the
server's whole heap many times while it does so. Measured on the report benchmark's store
(bench/RESULTS.md), raising the thresholds cuts the server's time for that page from ~3.6 s to
~2.2 s and for a 100-run history request by a third. The collector still runs; garbage in
cycles lives a little longer (a few MB at most).

``MLFLOW_GC_THRESHOLD``: three comma-separated integers for ``gc.set_threshold``
(default ``50000,20,20``), or ``default`` to keep CPython's own.
"""

import gc
import os
import sys

DEFAULT_THRESHOLD = (50000, 20, 20)


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
        # Never stop the server over a tuning knob; say what was wrong and keep the defaults.
        print(
            f"sitecustomize: MLFLOW_GC_THRESHOLD must be three non-negative integers like "
            f"'50000,20,20' or 'default', got {value!r}; keeping {gc.get_threshold()}",
            file=sys.stderr,
        )
        return None
    return parts


_wanted = _threshold(os.environ.get("MLFLOW_GC_THRESHOLD"))
if _wanted is not None:
    gc.set_threshold(*_wanted)
