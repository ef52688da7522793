"""The report's CLI over a tracking server at 1,000 and 10,000 runs: wall time and page sizes.

For each size: RUNS_LIST runs x 8 per-epoch metrics x EPOCHS epochs, with every metric and
tag an evaluation logs (``bench.report_bench.run_payload``, ~290 latest metrics a run),
written into SQLite in bulk (``populate_sql``), served by ``mlflow_server/entrypoint.sh`` (2
workers, as deployed), then ``python -m reporting`` run as a fresh process (imports and
start-up included, as a user or the report step runs it) after one warm-up run; wall time
of each timed run, and every page's size.

Next to it, the per-run client the report replaced (the seed's ``MLflowService``, as
``bench.report_bench.per_run_read`` makes it): ``runs/search`` pages of 1,000 runs, then one
``get_run`` and one ``get_metric_history`` per history metric for every run, reading only (no
pages drawn, no start-up: a lower bound of what that client's report would take). Above
PER_RUN_SAMPLE runs (REPORT_SCALE_PER_RUN_SAMPLE, 1,000) it reads the first page's runs and the
time is scaled by runs / sample, said so in the table (the full read of 10,000 runs is ~90,000
requests, most of an hour).

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
PER_RUN_SAMPLE = int(os.environ.get("REPORT_SCALE_PER_RUN_SAMPLE", size("1000", "20")))


def _cli(url: str, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "reporting", "--tracking-uri", url, "--experiment", EXPERIMENT,
         "--out", str(out)],
        check=True, env=env, cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - started


def per_run_time(url: str, runs: int) -> dict:
    """The per-run client's read of ``min(runs, PER_RUN_SAMPLE)`` runs: seconds and requests.

    ``bench.report_bench.per_run_read`` (what the report benchmark's per-run render fetches),
    timed in this process and scaled to ``runs``.
    """
    from mlflow.tracking import MlflowClient

    from bench.report_bench import per_run_read
    from tests.integration.conftest import count_requests  # the tests' counter, one home

    sample = min(runs, PER_RUN_SAMPLE)
    with count_requests() as counter:
        started = time.perf_counter()
        histories, points = per_run_read(MlflowClient(tracking_uri=url), limit=sample)
        elapsed = time.perf_counter() - started
    if len(histories) != sample or not points:
        raise RuntimeError(f"per-run read got {len(histories)} of {sample} runs, {points} points")
    requests = sum(counter.values())
    return {
        "sample": sample,
        "read_s": elapsed,
        "scaled_s": elapsed * runs / sample,
        "scaled_requests": round(requests * runs / sample),
    }


def one_size(runs: int, workdir: Path) -> dict:
    """Populate ``runs`` runs, serve them, time the CLI; the figures of one row."""
    db = workdir / f"mlflow-{runs}.db"
    started = time.perf_counter()
    populate_sql(str(db), runs=runs)
    populated = time.perf_counter() - started
    with mlflow_server(f"sqlite:///{db}", workdir) as url:
        _cli(url, workdir / f"warmup-{runs}")
        times = [_cli(url, workdir / f"out-{runs}-{i}") for i in range(RENDERS)]
        per_run = per_run_time(url, runs)
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
        "per_run": per_run,
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
        print("\n| runs | per-run client, reading only (s) | its requests | report CLI, all of it (s) "
              "| ratio |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|")
        for r in rows:
            pr = r["per_run"]
            scaled = (
                ""
                if pr["sample"] == r["runs"]
                else f" (x{r['runs'] / pr['sample']:g} of {pr['sample']:,} runs' {pr['read_s']:.1f})"
            )
            print(f"| {r['runs']:,} | {pr['scaled_s']:.1f}{scaled} | {pr['scaled_requests']:,} "
                  f"| {r['median_s']:.2f} | {pr['scaled_s'] / r['median_s']:.1f}x |")  # fmt: skip
        for r in rows:
            print(f"page sizes at {r['runs']:,} runs (KiB): {r['sizes_kib']}")
        ok = all(r["median_s"] <= 10 and r["under_limit"] for r in rows)
        print("targets (<= 10 s CLI, every page < 5 MiB):", "MET" if ok else "NOT MET")
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
