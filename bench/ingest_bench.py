"""Ingest memory and time by source size: ``python -m bench ingest``.

Online Retail is synthesised at 1x, 4x and 16x by cloning its buyers under new ids (clone
k adds k * 1,000,000 to CustomerID; nothing else is shifted) into one CSV file per size.
Each (size, path) runs ingest in a fresh Python process that reports its peak RSS
(``resource.getrusage``; it includes TensorFlow's import, which the baseline line shows
alone) and the wall time of ingest itself. ``chunked`` is ``trainer.ingest.run_ingest``
(``dataset.chunk_rows`` rows at a time, buyer partitions spilled to Parquet); ``before`` is
the whole-source ingest as it was at commit ``BEFORE`` (its module loaded from git), which
runs at 16x only with ``--before-16x``: it needs several GiB more and most of the bench's
time on a shared 2-core machine (see bench/RESULTS.md).
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
BEFORE = "556a965"  # the last commit whose ingest held the whole source in memory

# Runs in the child: ingest once (with the module at argv[3]), print time and peak RSS as JSON.
_CHILD = """
import dataclasses, importlib.util, json, resource, sys, time
from trainer import config as cfg
spec = importlib.util.spec_from_file_location("ingest_under_test", sys.argv[3])
ingest = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ingest)
config = cfg.load_config(sys.argv[1])
dataset = dataclasses.replace(config.dataset, source=sys.argv[2])
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
    """Writes ``scale`` clones of Online Retail (new buyer ids) into one CSV file."""
    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    buyers = pd.to_numeric(raw["CustomerID"], errors="coerce")
    path = os.path.join(folder, f"retail-{scale}x.csv")
    for k in range(scale):
        clone = raw.copy()
        clone["CustomerID"] = (buyers + k * BUYER_ID_STEP).map(
            lambda v: "" if pd.isna(v) else f"{v:.1f}"
        )
        clone.to_csv(path, index=False, header=k == 0, mode="a" if k else "w")
    return path


def before_module(folder: str) -> str:
    """The ingest module as of ``BEFORE``, written to a file (from git)."""
    path = os.path.join(folder, "ingest_before.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            subprocess.run(
                ["git", "show", f"{BEFORE}:trainer/ingest/files.py"],
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    return path


def measure(source: str, module: str, out: str) -> dict:
    """Runs ingest in a fresh process; returns its wall time and peak RSS."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, CONFIG, source, module, out],
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
    before_16x = "--before-16x" in argv
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
        modules = {
            "chunked": os.path.join(REPO, "trainer", "ingest.py"),
            "before": before_module(folder),
        }
        base = measure("-", modules["chunked"], os.path.join(folder, "none"))
        print(f"baseline (imports only): peak RSS {base['import_rss_mib']:.0f} MiB", flush=True)
        print("| size | rows read | path | peak RSS (MiB) | wall time (s) |")
        print("|---|---:|---|---:|---:|")
        for scale in SCALES:
            source = synthesise(folder, scale)
            for name, module in modules.items():
                if name == "before" and scale == 16 and not before_16x:
                    continue
                out = os.path.join(folder, f"out-{scale}-{name}")
                got = measure(source, module, out)
                print(
                    f"| {scale}x | {got['rows_read']:,} | {name} | {got['peak_rss_mib']:,.0f} "
                    f"| {got['seconds']:.1f} |",
                    flush=True,
                )
    print(f"whole bench: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
