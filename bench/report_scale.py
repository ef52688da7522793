"""The report's CLI over a tracking server at 1,000 and 10,000 runs: wall time and page sizes.

For each size: RUNS_LIST runs x 8 per-epoch metrics x EPOCHS epochs, with every metric and
tag an evaluation logs (``bench.report_bench.run_payload``, ~290 latest metrics a run),
written into SQLite in bulk (``populate_sql``), served by ``mlflow_server/entrypoint.sh`` (2
workers, as deployed), then ``python -m reporting`` run as a fresh process (imports and
start-up included, as a user or the report step runs it) after one warm-up run; wall time
of each timed run, and every page's size.

Run: ``python -m bench report-scale`` (REPORT_SCALE_RUNS="1000,10000", REPORT_SCALE_RENDERS=3;
smoke: 20 runs, 1 render).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import size
from bench.report_bench import EXPERIMENT, mlflow_server, populate_sql

RUNS_LIST = [
    int(n) for n in os.environ.get("REPORT_SCALE_RUNS", size("1000,10000", "20")).split(",")
]
RENDERS = int(os.environ.get("REPORT_SCALE_RENDERS", size("3", "1")))
REPO = Path(__file__).resolve().parent.parent
PAGE_LIMIT = 5 * 1024 * 1024


def _cli(url: str, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "reporting", "--tracking-uri", url, "--experiment", EXPERIMENT,
         "--out", str(out)],
        check=True, env=env, cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - started


def one_size(runs: int, workdir: Path) -> dict:
    """Populate ``runs`` runs, serve them, time the CLI; the figures of one row."""
    db = workdir / f"mlflow-{runs}.db"
    started = time.perf_counter()
    populate_sql(str(db), runs=runs)
    populated = time.perf_counter() - started
    with mlflow_server(f"sqlite:///{db}", workdir) as url:
        _cli(url, workdir / f"warmup-{runs}")
        times = [_cli(url, workdir / f"out-{runs}-{i}") for i in range(RENDERS)]
    out = workdir / f"out-{runs}-0"
    sizes = {p.name: p.stat().st_size for p in sorted(out.glob("*.html"))}
    return {
        "runs": runs,
        "populated_s": round(populated, 1),
        "cli_s": [round(t, 2) for t in times],
        "median_s": round(statistics.median(times), 2),
        "largest_page": max(sizes, key=sizes.get),
        "sizes_kib": {k: round(v / 1024) for k, v in sizes.items()},
        "under_limit": all(v < PAGE_LIMIT for v in sizes.values()),
    }


def main() -> list[dict]:
    """Run every size and print a Markdown table for bench/RESULTS.md."""
    workdir = Path(tempfile.mkdtemp(prefix="report-scale-"))
    try:
        rows = []
        for runs in RUNS_LIST:
            row = one_size(runs, workdir)
            print(
                f"{runs} runs: populated in {row['populated_s']}s, CLI {row['cli_s']}", flush=True
            )
            rows.append(row)
        print("\n| runs | CLI wall s (median of renders) | largest page | every page < 5 MiB |")
        print("|---:|---:|---|---|")
        for r in rows:
            largest = r["largest_page"]
            print(f"| {r['runs']:,} | {r['median_s']:.2f} ({r['cli_s']}) | {largest} "
                  f"{r['sizes_kib'][largest]} KiB | {'yes' if r['under_limit'] else 'NO'} |")  # fmt: skip
        for r in rows:
            print(f"page sizes at {r['runs']:,} runs (KiB): {r['sizes_kib']}")
        ok = all(r["median_s"] <= 10 and r["under_limit"] for r in rows)
        print("targets (<= 10 s CLI, every page < 5 MiB):", "MET" if ok else "NOT MET")
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
