"""Page sizes of the report for a 1,000-run experiment (the figures the README states).

Logs RUNS runs x 8 per-epoch metrics x EPOCHS epochs (``bench.report_bench.populate``, the
trainer's shape) into a throwaway SQLite store, renders the report with the defaults, and
prints each view's size in bytes and the render time. Run: ``python -m bench report-pages``
(REPORT_BENCH_RUNS, REPORT_BENCH_EPOCHS as for the report benchmark).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.report_bench import EPOCHS, EXPERIMENT, RUNS, populate
from reporting.build import write_report


def main() -> dict[str, int]:
    """Populate, render, print and return view -> page size in bytes."""
    with tempfile.TemporaryDirectory(prefix="report-pages-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        started = time.perf_counter()
        populate(uri)
        populated = time.perf_counter() - started
        started = time.perf_counter()
        result = write_report(uri, EXPERIMENT, str(Path(tmp) / "report"))
        rendered = time.perf_counter() - started
        sizes = {view: Path(path).stat().st_size for view, path in result.pages.items()}
    print(
        f"{RUNS} runs x {EPOCHS} epochs: populated in {populated:.0f}s, rendered in {rendered:.1f}s"
    )
    for view, size in sizes.items():
        print(f"{view:<16} {size / 1024:8.0f} KiB")
    return sizes


if __name__ == "__main__":
    main()
