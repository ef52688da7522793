"""Benchmarks. ``python -m bench`` runs them all; ``python -m bench NAME`` runs one.

``python -m bench --smoke [NAME ...]`` runs them at a tiny size: a check that every
benchmark still runs end to end (CI runs it: tests/integration/test_bench_smoke.py), not a
measurement. The size is chosen through the environment (``BENCH_SMOKE=1``) so that the
child processes a benchmark starts measure at the same size as their parent.
"""

from __future__ import annotations

import os

SMOKE_ENV = "BENCH_SMOKE"


def smoke() -> bool:
    """Whether the benchmarks run at their smoke size (``python -m bench --smoke``)."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def size(full, tiny):
    """``tiny`` in smoke mode, else ``full``: the one switch a benchmark's sizes go through."""
    return tiny if smoke() else full
