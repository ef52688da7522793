"""``python -m bench [NAME ...] [--OPTION ...]``: run the registered benchmarks (all when no
name is given). Options are left in ``sys.argv`` for the benchmarks that read them (e.g.
``python -m bench ingest --before-16x``)."""

from __future__ import annotations

import importlib
import sys

# name -> module with a ``main()``; add a line per benchmark.
BENCHMARKS: dict[str, str] = {
    "ingest": "bench.ingest_bench",
    "report": "bench.report_bench",
    "report-pages": "bench.report_pages",
    "repurchase": "bench.repurchase",
    "topk": "bench.topk",
    "train": "bench.train_bench",
    "tracking": "bench.tracking_bench",
}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all) in registry order."""
    args = sys.argv[1:] if argv is None else argv
    names = [a for a in args if not a.startswith("--")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name} ==", flush=True)
        importlib.import_module(BENCHMARKS[name]).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
