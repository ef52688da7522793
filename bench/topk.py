"""Exact top-k over a large catalog in bounded memory.

``retrieval.exact_top_k_chunked`` (candidates scored in chunks, running top-k) against
``retrieval.exact_top_k`` (one [queries x catalog] block per query batch), and
``retrieval.chunked_top_k_tf`` (the graph twin, compiled; traced and its table copied before the
measurement, so its memory is that of the call alone), 1,000 queries of
64-d random embeddings, k = 100, catalogs of 100k and 1M products. Each (catalog, path) runs
once in a fresh subprocess; memory is its peak RSS during the call (the peak reset through
``/proc/self/clear_refs`` just before) minus its RSS then, i.e. what the top-k needs for 1,000
queries. The unchunked path is skipped where
its score block would not fit in half this machine's memory. Where both ran, their results are
compared: the matrix products of a chunk and of the whole catalog round differently in the
last bits (BLAS blocks them differently), so near-tied candidates can swap; the comparison
gives the share of identical (query, rank) indices, the overlap of the top-k sets and the
largest score difference at equal rank.

Run: ``python -m bench topk``; prints a Markdown table; bench/RESULTS.md is written by hand.
Smoke size (``--smoke``): 100 queries, k = 10, a catalog of 20k products.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import size

QUERIES = size(1000, 100)
DIM = 64
K = size(100, 10)
CATALOGS = size((100_000, 1_000_000), (20_000,))
PATHS = ("chunked", "unchunked", "chunked_tf")
# exact_top_k's block: scores, their negation, argpartition's int64 indices.
MEMORY_LIMIT_BYTES = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def make_tf_top_k(candidates, k: int):
    """``retrieval.chunked_top_k_tf`` on inner products, compiled (as the serving signature is)."""
    import tensorflow as tf

    from trainer import retrieval

    table = tf.constant(candidates)

    @tf.function(input_signature=[tf.TensorSpec([None, DIM], tf.float32)])
    def top(q):
        return retrieval.chunked_top_k_tf(
            lambda a, b: tf.matmul(q, table[a:b], transpose_b=True), tf.shape(table)[0], k
        )

    def run(queries, *_, **__):
        values, indices = top(tf.constant(queries))
        return indices.numpy().astype(np.int64), values.numpy()

    return run


def reset_peak_rss() -> int:
    """Resets this process's peak RSS (Linux ``clear_refs``) and returns its current RSS.

    So that the peak after the measured call is the call's own, not that of building the
    inputs (or of TensorFlow copying the table) before it.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS:")


def peak_rss() -> int:
    """This process's peak RSS in bytes since it started or since ``reset_peak_rss``.

    ``VmHWM``, not ``getrusage``'s ``ru_maxrss``: that one neither resets nor starts from zero
    in a child (Linux carries the parent's peak over into the child at ``exec``), so a child
    of a large ``python -m bench`` process would report the parent's memory as its own.
    """
    return _status_bytes("VmHWM:")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return 1024 * next(int(line.split()[1]) for line in f if line.startswith(field))


def child(catalog: int, path: str, out: str) -> dict:
    """One (catalog, path) measurement; run in a fresh process."""
    from trainer import retrieval

    rng = np.random.default_rng(0)
    queries = rng.standard_normal((QUERIES, DIM), dtype=np.float32)
    candidates = rng.standard_normal((catalog, DIM), dtype=np.float32)
    if path == "chunked_tf":
        fn = make_tf_top_k(candidates, K)
        fn(queries[:2])  # import, copy the table and trace before the measured call
    else:
        fn = retrieval.exact_top_k_chunked if path == "chunked" else retrieval.exact_top_k
    rss_inputs = reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    idx, scores = fn(queries, candidates, K, batch_size=QUERIES)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.savez(out, idx=idx, scores=scores)
    return {
        "catalog": catalog,
        "path": path,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_inputs": rss_inputs,
        "rss_peak": peak_rss(),
        "file": out,
    }


def main() -> None:
    """Runs every (catalog, path) in its own process and prints the table."""
    with tempfile.TemporaryDirectory(prefix="bench_topk_") as folder:
        run(folder)


def run(folder: str) -> None:
    """The benchmark, the children's results under ``folder``."""
    from trainer import retrieval

    print(f"load average before: {os.getloadavg()}; chunk {retrieval.DEFAULT_CHUNK}", flush=True)
    results = []
    for catalog in CATALOGS:
        for path in PATHS:
            if path == "unchunked" and QUERIES * catalog * 16 > MEMORY_LIMIT_BYTES:
                print(f"{catalog:,} {path}: skipped ({QUERIES} x {catalog:,} x 16 bytes)")
                continue
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.topk",
                    "--child",
                    str(catalog),
                    path,
                    os.path.join(folder, f"{catalog}_{path}.npz"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                raise RuntimeError(f"{catalog:,} {path}: child failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    print(f"load average after: {os.getloadavg()}")
    mib = 1024 * 1024
    print(
        "| catalog | path | wall (s) | CPU (s) | peak RSS in the call (MiB) | top-k memory (MiB) |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['catalog']:,} | {r['path']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['rss_peak'] / mib:,.0f} | {(r['rss_peak'] - r['rss_inputs']) / mib:,.0f} |"
        )
    for catalog in CATALOGS:
        ran = {r["path"]: r["file"] for r in results if r["catalog"] == catalog}
        for path in ("unchunked", "chunked_tf"):
            if path in ran:
                print(f"{catalog:,} chunked vs {path}: {compare(ran['chunked'], ran[path])}")


def compare(chunked: str, unchunked: str) -> str:
    """How far the chunked result is from the unchunked one."""
    a, b = np.load(chunked), np.load(unchunked)
    same = float((a["idx"] == b["idx"]).mean())
    overlap = np.mean(
        [len(np.intersect1d(x, y)) / len(y) for x, y in zip(a["idx"], b["idx"], strict=True)]
    )
    diff = float(np.abs(a["scores"] - b["scores"]).max())
    return (
        f"identical (query, rank) indices {same:.4%}, top-{K} set overlap {overlap:.4%}, "
        f"max score difference at equal rank {diff:.2e}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), sys.argv[3], sys.argv[4])))
    else:
        main()
