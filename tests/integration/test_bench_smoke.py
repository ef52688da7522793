"""``python -m bench --smoke``: every benchmark in bench/ still runs, at a tiny size.

One subprocess runs them all (bench/__main__.py's registry), as ``make bench`` would at full
size; the benchmarks start their own MLflow servers (through ``mlflow_server/entrypoint.sh``)
and PostgreSQL. The test reads only the output: nothing here imports bench/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO_ROOT, find_postgres_bindir

pytestmark = pytest.mark.integration

# Each benchmark of the registry and the line(s) it prints with its figures.
FIGURES = {
    "bootstrap": r"^\| 500 \| [\d.]+ \| [\d.]+ \| < 1 s: (met|missed) \|$",
    "ingest": r"^\| 1x \| [\d,]+ \| chunked \| [\d,]+ \| [\d.]+ \|$",
    "report": r"^\| HTTP requests \| \d+ \| \d+ \| [\d.]+x \|$",
    "report-pages": r"^report\s+\d+ KiB$",
    "report-scale": (
        r"^\| 20 \| [\d.]+ \(\[[\d.]+\]\) \| \S+\.html \d+ KiB \| yes \|$",
        r"^\| 20 \| [\d.]+ \| [\d,]+ \| [\d.]+ \| [\d.]+x \|$",  # the per-run client beside it
    ),
    "rank": r"^\| 400 \([\d,]+\) \| 200 \| [\d,]+ / [\d,]+ \([\d,]+\) \| [\d,]+ / [\d,]+ \| [\d.]+ \| [\d,-]+ \|$",
    "repurchase": r"^\| 4,000 \| new \| [\d.]+ \|",
    "serving": r"^\| 100 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$",
    "topk": r"^\| 20,000 \| chunked_tf \| [\d.]+ \| [\d.]+ \|",
    "train": r"^\| ours \(RunTracker\) \| server \| [\d.]+ s \| [\d.]+ s \| [\d.]+% \|$",
    "tracking": r"^\| entrypoint.sh \| 4 \| runs/search \| [\d.]+ \|",
}


@pytest.mark.timeout(900)
def test_every_benchmark_runs_at_smoke_size():
    names = list(FIGURES)
    if find_postgres_bindir() is None:  # the tracking benchmark needs PostgreSQL
        if os.environ.get("CI") or os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is not installed (CI or REQUIRE_POSTGRES is set)")
        names.remove("tracking")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("BENCH_SMOKE", None)  # --smoke alone must set the size
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", *names],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    out = done.stdout
    tail = f"stdout:\n{out[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, tail
    assert re.findall(r"^== (\S+) ==$", out, re.M) == names, tail
    for name in names:
        assert re.search(rf"^-- {re.escape(name)}: ok in \d+ s$", out, re.M), (name, tail)
        lines = FIGURES[name]
        for line in (lines,) if isinstance(lines, str) else lines:
            assert re.search(line, out, re.M), (name, line, tail)
    assert f"bench (smoke): {len(names)} of {len(names)} ran" in out, tail
