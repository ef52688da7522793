"""``python -m bench [--smoke] [NAME ...] [--OPTION ...]``: run the registered benchmarks (all
when no name is given), in registry order. ``--smoke`` runs them at a tiny size (seconds each:
a check that they run, not figures to record). Other options are left in ``sys.argv`` for the
benchmarks that read them (e.g. ``python -m bench ingest --before-16x``).

A benchmark that fails prints its traceback and the others still run; the exit status is 1
when any failed.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback

import bench

# name -> module with a ``main()``; add a line per benchmark.
BENCHMARKS: dict[str, str] = {
    "bootstrap": "bench.bootstrap_bench",
    "ingest": "bench.ingest_bench",
    "report": "bench.report_bench",
    "report-pages": "bench.report_pages",
    "report-scale": "bench.report_scale",
    "repurchase": "bench.repurchase",
    "resume": "bench.resume_bench",
    "strong": "bench.strong_bench",
    "rank": "bench.rank_bench",
    "serving": "bench.serving_bench",
    "topk": "bench.topk",
    "train": "bench.train_bench",
    "halving": "bench.halving_bench",
    "tracking": "bench.tracking_bench",
}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all) in registry order; 1 if any failed."""
    args = sys.argv[1:] if argv is None else argv
    names = [a for a in args if not a.startswith("--")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    if "--smoke" in args:
        os.environ[bench.SMOKE_ENV] = "1"  # read by each module (and its children) on import
    failed = []
    started = time.perf_counter()
    for name in names:
        print(f"== {name} ==", flush=True)
        t = time.perf_counter()
        try:
            importlib.import_module(BENCHMARKS[name]).main()
            status = "ok"
        except (Exception, SystemExit):  # noqa: BLE001 - report it, run the others
            traceback.print_exc()
            failed.append(name)
            status = "FAILED"
        print(f"-- {name}: {status} in {time.perf_counter() - t:.0f} s", flush=True)
    mode = "smoke" if bench.smoke() else "full"
    print(f"bench ({mode}): {len(names) - len(failed)} of {len(names)} ran "
          f"in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
