"""Ingest memory and time by source size: ``python -m bench ingest``.

Online Retail is synthesised at 1x, 4x and 16x by cloning its buyers under new ids (clone
k adds k * 1,000,000 to CustomerID; nothing else is shifted), one CSV file per clone, read
as one glob source. Each (size, path) runs ``trainer.ingest.run_ingest`` in a fresh Python
process that reports its peak RSS (``resource.getrusage``, which includes TensorFlow's
import: the baseline row shows that alone) and the wall time of ingest itself. ``chunked``
is the default path (``dataset.chunk_rows``, buyer partitions spilled to Parquet);
``memory`` is ``chunk_rows: 0`` (the whole source in one frame, as ingest was before).
The memory path runs at 16x only when ``--memory-16x`` is given: on the shared 2-core
machine it would take most of the time budget (see bench/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "online_retail", "online_retail.csv.gz")
CONFIG = os.path.join(REPO, "configs", "online_retail.yaml")
SCALES = (1, 4, 16)
BUYER_ID_STEP = 1_000_000

# Runs in the child: ingest once, print wall time and peak RSS as JSON.
_CHILD = """
import dataclasses, json, resource, sys, time
from trainer import config as cfg, ingest
config = cfg.load_config(sys.argv[1])
dataset = dataclasses.replace(config.dataset, source=sys.argv[2], chunk_rows=int(sys.argv[3]))
config = dataclasses.replace(config, dataset=dataset)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
stats = ingest.run_ingest(config, sys.argv[4]) if sys.argv[2] != "-" else None
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "import_rss_mib": before / 1024,
    "rows_read": stats.rows_read if stats else 0,
}))
"""


def synthesise(folder: str, scale: int) -> str:
    """Writes ``scale`` clones of Online Retail (new buyer ids) as CSV files; returns a glob."""
    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    buyers = pd.to_numeric(raw["CustomerID"], errors="coerce")
    for k in range(scale):
        path = os.path.join(folder, f"retail-{scale}x-{k:02d}.csv")
        if not os.path.exists(path):
            clone = raw.copy()
            clone["CustomerID"] = (buyers + k * BUYER_ID_STEP).map(
                lambda v: "" if pd.isna(v) else f"{v:.1f}"
            )
            clone.to_csv(path, index=False)
    return os.path.join(folder, f"retail-{scale}x-*.csv")


def measure(source: str, chunk_rows: int, out: str) -> dict:
    """Runs ingest in a fresh process; returns its wall time and peak RSS."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, CONFIG, source, str(chunk_rows), out],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Prints a Markdown table of peak RSS and wall time per size and path."""
    argv = sys.argv[1:] if argv is None else argv
    memory_16x = "--memory-16x" in argv
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
        base = measure("-", 0, os.path.join(folder, "none"))
        print(f"baseline (imports only): peak RSS {base['import_rss_mib']:.0f} MiB", flush=True)
        print("| size | rows read | path | peak RSS (MiB) | wall time (s) |")
        print("|---|---:|---|---:|---:|")
        for scale in SCALES:
            source = synthesise(folder, scale)
            paths = {"chunked": 200_000, "memory": 0}
            if scale == 16 and not memory_16x:
                paths.pop("memory")
            for name, chunk_rows in paths.items():
                out = os.path.join(folder, f"out-{scale}-{name}")
                got = measure(source, chunk_rows, out)
                print(
                    f"| {scale}x | {got['rows_read']:,} | {name} | {got['peak_rss_mib']:,.0f} "
                    f"| {got['seconds']:.1f} |",
                    flush=True,
                )
    print(f"whole bench: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
