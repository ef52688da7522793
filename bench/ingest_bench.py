"""Ingest memory and time by source size: ``python -m bench ingest``.

Online Retail is synthesised at 1x, 4x and 16x by cloning its buyers under new ids (clone
k adds k * 1,000,000 to CustomerID; nothing else is shifted) into one CSV file per size.
Each (size, path) runs ingest in a fresh Python process that reports its peak RSS
(``VmHWM`` of /proc/self/status; it includes TensorFlow's import, which the baseline line shows
alone) and the wall time of ingest itself. ``chunked`` is today's ``trainer.ingest.run_ingest``
(``dataset.chunk_rows`` rows at a time, buyer partitions spilled to Parquet); ``before`` is
the whole-source ingest as it was at commit ``BEFORE``: that commit's ``trainer/`` and
``configs/`` extracted from git into a scratch folder, which the child imports instead of
today's (skipped where the clone lacks the commit, e.g. a shallow one). It runs at 16x only
with ``--before-16x``: it needs several GiB more and most of the bench's time on a shared
2-core machine (see bench/RESULTS.md). Smoke size: one buyer in 20 (and one id-less row in
20), 1x only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd

from bench import size

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "online_retail", "online_retail.csv.gz")
CONFIG = os.path.join("configs", "online_retail.yaml")  # under the code's root
SCALES = size((1, 4, 16), (1,))
BUYER_STEP = size(1, 20)  # keep the buyers whose id is 0 mod this (and as many id-less rows)
BUYER_ID_STEP = 1_000_000
BEFORE = "556a965"  # the last commit whose ingest held the whole source in memory

# Runs in the child, in the root of the code under test (today's checkout or BEFORE's):
# ingest once, print time and peak RSS as JSON. argv: source ("-": imports only), out folder.
_CHILD = """
import dataclasses, json, sys, time
def peak_kib():  # VmHWM: getrusage's ru_maxrss would start from the parent's peak
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
from trainer import config as cfg
from trainer import ingest
config = cfg.load_config("configs/online_retail.yaml")
dataset = dataclasses.replace(config.dataset, source=sys.argv[1])
config = dataclasses.replace(config, dataset=dataset)
before = peak_kib()
start = time.perf_counter()
stats = ingest.run_ingest(config, sys.argv[2]) if sys.argv[1] != "-" else None
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_mib": peak_kib() / 1024,
    "import_rss_mib": before / 1024,
    "rows_read": stats.rows_read if stats else 0,
}))
"""


def synthesise(folder: str, scale: int) -> str:
    """Writes ``scale`` clones of Online Retail (new buyer ids) into one CSV file."""
    raw = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    buyers = pd.to_numeric(raw["CustomerID"], errors="coerce")
    if BUYER_STEP > 1:  # ingest's time follows the number of buyers more than of rows
        nth = pd.Series(range(len(raw)), index=raw.index) % BUYER_STEP == 0
        keep = (buyers % BUYER_STEP == 0) | (buyers.isna() & nth)
        raw, buyers = raw[keep], buyers[keep]
    path = os.path.join(folder, f"retail-{scale}x.csv")
    for k in range(scale):
        clone = raw.copy()
        clone["CustomerID"] = (buyers + k * BUYER_ID_STEP).map(
            lambda v: "" if pd.isna(v) else f"{v:.1f}"
        )
        clone.to_csv(path, index=False, header=k == 0, mode="a" if k else "w")
    return path


def before_code(folder: str) -> str | None:
    """``trainer/`` and ``configs/`` as of ``BEFORE``, extracted into a folder (None: no commit)."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{BEFORE}^{{commit}}"], cwd=REPO, capture_output=True
    )
    if known.returncode:
        return None
    root = os.path.join(folder, f"code-{BEFORE}")
    os.makedirs(root)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", BEFORE, "trainer", "configs"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    return root


def measure(source: str, code: str, out: str) -> dict:
    """Runs ingest with the code under ``code`` in a fresh process; its time and peak RSS."""
    env = dict(os.environ, PYTHONPATH=code, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, source, out],
        cwd=code,  # ``-c`` puts the working directory first on sys.path
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
        codes = {"chunked": REPO, "before": before_code(folder)}
        if codes["before"] is None:
            print(f"before: skipped (commit {BEFORE} is not in this clone)", flush=True)
            del codes["before"]
        base = measure("-", REPO, os.path.join(folder, "none"))
        print(f"baseline (imports only): peak RSS {base['import_rss_mib']:.0f} MiB", flush=True)
        print("| size | rows read | path | peak RSS (MiB) | wall time (s) |")
        print("|---|---:|---|---:|---:|")
        for scale in SCALES:
            source = synthesise(folder, scale)
            for name, code in codes.items():
                if name == "before" and scale == 16 and not before_16x:
                    continue
                out = os.path.join(folder, f"out-{scale}-{name}")
                got = measure(source, code, out)
                print(
                    f"| {scale}x | {got['rows_read']:,} | {name} | {got['peak_rss_mib']:,.0f} "
                    f"| {got['seconds']:.1f} |",
                    flush=True,
                )
    print(f"whole bench: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
