"""Training-step cost of the repurchase bonus against the catalog size (issue 14, point 1).

One training step of the in-batch softmax with the repurchase part, on synthetic tensors:
buyer and product embeddings ([batch, 64] variables standing for the towers' outputs), a
purchase history of ``HISTORY`` ids per buyer, the batch's product ids as candidates, and the
rank weights; forward (inner products + bonus, softmax cross-entropy with the diagonal as
labels) and the gradient w.r.t. embeddings and rank weights, compiled with ``tf.function``
(shapes unknown when traced, as in ``fit``). Paths:

- ``new``: ``model.repurchase_bonus`` with the batch's candidate count unknown when traced,
  as in ``fit``: the join of history ids with candidate ids (``sparse_repurchase_bonus``);
- ``old``: ``model.dense_repurchase_bonus`` (the [batch x catalog] scatter, then a gather of
  the candidates), what it ran before; skipped where its dense tensor alone would not fit in
  this machine's memory;
- ``none``: the same step without the bonus (the floor: the in-batch matmul and softmax).

Ids are drawn from a Zipf(1) popularity over the catalog (history and candidates alike, so the
match rate stays realistic at every size); history lengths are uniform in [0, HISTORY], the
rest PAD. Every (catalog, path) runs in a fresh subprocess so that its peak RSS
(``resource.getrusage`` maxrss) is its own; the child reports its RSS after building the
inputs and after the steps. Step time is the median of the timed steps after ``WARMUP``
untimed ones, wall and process CPU time (all threads: the work done, which other load on
the machine disturbs less than the wall time).

Run: ``python -m bench repurchase`` (or ``python -m bench.repurchase``); prints a Markdown
table; bench/RESULTS.md is written by hand from it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

BATCH = 4096
HISTORY = 200
DIM = 64
CATALOGS = (4_000, 25_000, 100_000, 1_000_000)
PATHS = ("new", "old", "none")
WARMUP = 2
MAX_STEPS = 7
MIN_STEPS = 3
STEP_BUDGET_S = 30.0  # timed steps stop after this much (at least MIN_STEPS)
# The old path holds two [batch x catalog] float32 tensors (the scatter and its gradient).
MEMORY_LIMIT_BYTES = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def synthetic_ids(rng, catalog: int, size) -> object:
    """Product ids drawn with Zipf(1) popularity over ``catalog`` ids."""
    import numpy as np

    cdf = np.cumsum(1.0 / np.arange(1, catalog + 1))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), catalog - 1).astype(np.int64)


def child(catalog: int, path: str) -> dict:
    """One (catalog, path) measurement; run in a fresh process."""
    import numpy as np
    import tensorflow as tf

    from trainer import features as feats
    from trainer import model as model_lib

    rng = np.random.default_rng(0)
    history = synthetic_ids(rng, catalog, (BATCH, HISTORY))
    lengths = rng.integers(0, HISTORY + 1, size=BATCH)
    history[np.arange(HISTORY)[None, :] >= lengths[:, None]] = feats.PAD
    history = tf.constant(history)
    candidate_ids = tf.constant(synthetic_ids(rng, catalog, BATCH))
    buyers = tf.Variable(tf.random.stateless_normal([BATCH, DIM], [1, 2]) * 0.1)
    products = tf.Variable(tf.random.stateless_normal([BATCH, DIM], [3, 4]) * 0.1)
    rank_weights = tf.Variable(tf.ones([HISTORY]))
    bonus = {
        "new": lambda h, w, c: model_lib.repurchase_bonus(h, w, c, catalog),
        "old": lambda h, w, c: model_lib.dense_repurchase_bonus(h, w, c, catalog),
        "none": None,
    }[path]
    variables = [buyers, products] + ([rank_weights] if bonus is not None else [])

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64)]
    )
    def step(history, candidate_ids):
        with tf.GradientTape() as tape:
            scores = tf.matmul(buyers, products, transpose_b=True)
            if bonus is not None:
                scores += bonus(history, rank_weights, candidate_ids)
            labels = tf.range(tf.shape(scores)[0])
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)
            )
        return loss, tape.gradient(loss, variables)

    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(WARMUP):
        step(history, candidate_ids)[0].numpy()
    times, cpu_times = [], []
    started = time.perf_counter()
    while len(times) < MAX_STEPS and (
        len(times) < MIN_STEPS or time.perf_counter() - started < STEP_BUDGET_S
    ):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, grads = step(history, candidate_ids)
        _ = loss.numpy(), [g.numpy() for g in grads]
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return {
        "catalog": catalog,
        "path": path,
        "times": times,
        "median_s": statistics.median(times),
        "cpu_s": statistics.median(cpu_times),
        "rss_inputs": rss_inputs,
        "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def run_child(catalog: int, path: str) -> dict:
    """Runs ``child`` in a fresh interpreter and returns its result."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.repurchase", "--child", str(catalog), path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    """Markdown table: one row per (catalog, path)."""
    mib = 1024 * 1024
    lines = [
        "| catalog | path | step wall (s), median | timed steps wall (s) "
        "| step CPU (s), median | peak RSS (MiB) | peak - RSS after inputs (MiB) |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['catalog']:,} | {r['path']} | {r['median_s']:.3f} | "
            f"{', '.join(f'{t:.2f}' for t in r['times'])} | {r['cpu_s']:.3f} | "
            f"{r['rss_peak'] / mib:,.0f} | "
            f"{(r['rss_peak'] - r['rss_inputs']) / mib:,.0f} |"
        )
    return "\n".join(lines)


def ratios(results: list[dict], path: str) -> str:
    """Largest catalog's step time and peak RSS over the smallest's, for one path."""
    rows = sorted((r for r in results if r["path"] == path), key=lambda r: r["catalog"])
    if len(rows) < 2:
        return f"{path}: fewer than two catalog sizes"
    small, large = rows[0], rows[-1]
    return (
        f"{path}: {large['catalog']:,} / {small['catalog']:,}: step time "
        f"{large['median_s'] / small['median_s']:.2f}x (CPU {large['cpu_s'] / small['cpu_s']:.2f}x), "
        f"peak RSS "
        f"{large['rss_peak'] / small['rss_peak']:.2f}x, step RSS "
        f"{(large['rss_peak'] - large['rss_inputs']) / (small['rss_peak'] - small['rss_inputs']):.2f}x"
    )


def main() -> None:
    """Runs every (catalog, path) in its own process and prints the table."""
    print(f"load average before: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    results = []
    for catalog in CATALOGS:
        for path in PATHS:
            if path == "none" and catalog != CATALOGS[0]:
                continue  # the floor does not depend on the catalog
            if path == "old" and 2 * 4 * BATCH * catalog > MEMORY_LIMIT_BYTES:
                print(f"{catalog:,} {path}: skipped (two {BATCH} x {catalog:,} float32 tensors)")
                continue
            r = run_child(catalog, path)
            print(
                f"{catalog:,} {path}: median {r['median_s']:.3f} s (CPU {r['cpu_s']:.3f} s) of "
                f"{', '.join(f'{t:.3f}' for t in r['times'])}; peak RSS "
                f"{r['rss_peak'] / 2**20:,.0f} MiB",
                flush=True,
            )
            results.append(r)
    print(f"load average after: {os.getloadavg()}; {time.perf_counter() - started:.0f} s in all")
    print(table(results))
    for path in ("new", "old"):
        print(ratios(results, path))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), sys.argv[3])))
    else:
        main()
