"""Training-step cost of the repurchase bonus against the catalog size.

One training step of the in-batch softmax with the repurchase part, on synthetic tensors:
buyer and product embeddings ([batch, 64] variables standing for the towers' outputs), a
purchase history of ``HISTORY`` ids per buyer, the batch's product ids as candidates, and the
rank weights; forward (inner products + bonus, softmax cross-entropy with the diagonal as
labels) and the gradient w.r.t. embeddings and rank weights, compiled with ``tf.function``
(shapes unknown when traced, as in ``fit``). Paths:

- ``new``: ``model.sparse_repurchase_bonus``, what ``TwoTowerModel.repurchase_bonus`` runs:
  the join of history ids with candidate ids;
- ``old``: ``old_dense_bonus``, the formula it replaced (copied here: a [batch x catalog]
  scatter, then a gather of the candidates); skipped where its dense tensors would not fit in
  half this machine's memory;
- ``none``: the same step without the bonus (the floor: the in-batch matmul and softmax).

Ids are drawn from a Zipf(1) popularity over the catalog (history and candidates alike, so the
match rate stays realistic at every size); history lengths are uniform in [0, HISTORY], the
rest PAD. Memory: every (catalog, path) runs its warm-up steps and one more in a fresh
subprocess, so that its peak RSS (``VmHWM``, see ``bench.topk.peak_rss``) is its own; the child also
reports its RSS after building the inputs. Time: one process per path builds the step at every
catalog, warms each up (``WARMUP`` steps), then runs ``ROUNDS`` rounds of one step per catalog
in turn, so that the other load on a shared machine falls on all catalogs alike; the median
per catalog, wall and process CPU time (all threads: the work done, which other load
disturbs less than the wall time).

Then serving and evaluation's case: the bonus alone (forward) for 1,024 queries against the
whole catalog, new and old: times in interleaved rounds in one process, each call's peak RSS
by resetting the peak just before the first call in a fresh process per (catalog, path).

Run: ``python -m bench repurchase`` (or ``python -m bench.repurchase``); prints a Markdown
table; bench/RESULTS.md is written by hand from it. Smoke size (``--smoke``): batch 256, history
20, catalogs of 1k and 4k products (serving: 64 queries, 1k), 1 warm-up step, 2 rounds, the children
run in the benchmark's own process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench import size, smoke

BATCH = size(4096, 256)
HISTORY = size(200, 20)
DIM = 64
CATALOGS = size((4_000, 25_000, 100_000, 1_000_000), (1_000, 4_000))
PATHS = ("new", "old", "none")
WARMUP = size(2, 1)
SERVING_QUERIES = size(1024, 64)  # top_k_for_queries' batch
# The old path holds 2 x 1024 x catalog floats.
SERVING_CATALOGS = size((4_000, 25_000, 100_000), (1_000,))
ROUNDS = size(7, 2)  # timed steps per catalog, one per catalog per round
# The old path holds two [batch x catalog] float32 tensors (the scatter and its gradient).
MEMORY_LIMIT_BYTES = 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def synthetic_ids(rng, catalog: int, size) -> object:
    """Product ids drawn with Zipf(1) popularity over ``catalog`` ids."""
    import numpy as np

    cdf = np.cumsum(1.0 / np.arange(1, catalog + 1))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), catalog - 1).astype(np.int64)


def old_dense_bonus(history, rank_weights, candidate_ids, num_products: int):
    """``TwoTowerModel.repurchase_bonus`` before the join (commit ba1f252), for comparison."""
    import tensorflow as tf

    from trainer import features as feats

    batch, length = tf.shape(history)[0], tf.shape(history)[1]
    valid = history != feats.PAD
    rows = tf.repeat(tf.range(batch, dtype=history.dtype)[:, None], length, axis=1)
    indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(history, valid)], 1)
    weights = tf.boolean_mask(tf.broadcast_to(rank_weights, tf.shape(history)), valid)
    dense = tf.scatter_nd(
        indices, weights, tf.stack([tf.cast(batch, tf.int64), tf.constant(num_products, tf.int64)])
    )
    return tf.gather(dense, candidate_ids, axis=1)


def serving_calls(catalogs: list[int], paths: tuple[str, ...]) -> dict:
    """(catalog, path) -> (compiled bonus, its arguments) for SERVING_QUERIES queries.

    As serving and evaluation score the catalog: candidates = every product id (shuffled, as
    a catalog's rows are in no id order).
    """
    import numpy as np
    import tensorflow as tf

    from trainer import features as feats
    from trainer import train

    rng = np.random.default_rng(0)
    calls = {}
    for catalog in catalogs:
        history = synthetic_ids(rng, catalog, (SERVING_QUERIES, HISTORY))
        lengths = rng.integers(0, HISTORY + 1, size=SERVING_QUERIES)
        history[np.arange(HISTORY)[None, :] >= lengths[:, None]] = feats.PAD
        args = (tf.constant(history), tf.ones([HISTORY]), tf.constant(rng.permutation(catalog)))
        fns = {
            "new": tf.function(train.sparse_repurchase_bonus),
            "old": tf.function(lambda h, w, c, n=catalog: old_dense_bonus(h, w, c, n)),
        }
        for path in paths:
            calls[catalog, path] = (fns[path], args)
    return calls


def serving_timing_child(catalogs: list[int]) -> list[dict]:
    """Whole-catalog bonus (forward) times, new and old, catalogs and paths in rounds."""
    calls = serving_calls(catalogs, ("new", "old"))
    wall, cpu = {key: [] for key in calls}, {key: [] for key in calls}
    for round_ in range(WARMUP + ROUNDS):
        for key, (fn, args) in calls.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(*args).numpy()
            if round_ >= WARMUP:
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
    return [
        {
            "catalog": catalog,
            "path": path,
            "median_s": statistics.median(wall[catalog, path]),
            "cpu_s": statistics.median(cpu[catalog, path]),
        }
        for catalog, path in calls
    ]


def serving_memory_child(catalog: int, path: str) -> dict:
    """Peak RSS of one whole-catalog bonus call, the first, in a fresh process."""
    from bench.topk import peak_rss, reset_peak_rss

    (fn, args), *_ = serving_calls([catalog], (path,)).values()
    # The first call (tracing included): after it, TF's allocator keeps the freed blocks and
    # a second call's peak would show only what it could not reuse.
    base = reset_peak_rss()
    fn(*args).numpy()
    return {
        "catalog": catalog,
        "path": path,
        "peak_bytes": peak_rss() - base,
        "output_bytes": 4 * SERVING_QUERIES * catalog,
    }


def make_step(catalog: int, path: str):
    """The compiled training step of ``path`` at ``catalog`` and its arguments."""
    import numpy as np
    import tensorflow as tf

    from trainer import features as feats
    from trainer import train

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
        "new": train.sparse_repurchase_bonus,
        "old": lambda h, w, c: old_dense_bonus(h, w, c, catalog),
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

    def run() -> None:
        loss, grads = step(history, candidate_ids)
        _ = loss.numpy(), [g.numpy() for g in grads]

    return run


def memory_child(catalog: int, path: str) -> dict:
    """Peak RSS of one (catalog, path): warm-up steps and one more, in a fresh process."""
    run = make_step(catalog, path)
    from bench.topk import peak_rss

    rss_inputs = peak_rss()
    for _ in range(WARMUP + 1):
        run()
    return {
        "catalog": catalog,
        "path": path,
        "rss_inputs": rss_inputs,
        "rss_peak": peak_rss(),
    }


def timing_child(path: str, catalogs: list[int]) -> list[dict]:
    """Step times of one path at every catalog, one step per catalog in turn (rounds).

    Interleaving the catalogs spreads the other load on the machine over all of them alike,
    so their ratio is not an artefact of when each ran.
    """
    runs = {catalog: make_step(catalog, path) for catalog in catalogs}
    for run in runs.values():
        for _ in range(WARMUP):
            run()
    wall = {catalog: [] for catalog in catalogs}
    cpu = {catalog: [] for catalog in catalogs}
    for _ in range(ROUNDS):
        for catalog, run in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            wall[catalog].append(time.perf_counter() - t0)
            cpu[catalog].append(time.process_time() - c0)
    return [
        {
            "catalog": catalog,
            "path": path,
            "times": wall[catalog],
            "median_s": statistics.median(wall[catalog]),
            "cpu_s": statistics.median(cpu[catalog]),
        }
        for catalog in catalogs
    ]


def child(args: list[str]) -> object:
    """One child measurement, named by its command line (``--memory CATALOG PATH``, ...)."""
    kind, rest = args[0], args[1:]
    if kind == "--memory" and len(rest) == 2:
        return memory_child(int(rest[0]), rest[1])
    if kind == "--serving-timing" and not rest:
        return serving_timing_child(list(SERVING_CATALOGS))
    if kind == "--serving-memory" and len(rest) == 2:
        return serving_memory_child(int(rest[0]), rest[1])
    if kind == "--timing" and len(rest) > 1:
        return timing_child(rest[0], [int(c) for c in rest[1:]])
    raise ValueError(f"unknown child {args}")


def run_child(*args: str) -> object:
    """Runs this module with ``args`` in a fresh interpreter and returns its JSON result.

    At smoke size the child runs in this process instead (one TensorFlow import, not one per
    child; its memory figures are then this process's, not the measurement's own).
    """
    if smoke():
        return json.loads(json.dumps(child(list(args))))
    out = subprocess.run(
        [sys.executable, "-m", "bench.repurchase", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"bench.repurchase {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    """Markdown table: one row per (catalog, path)."""
    mib = 1024 * 1024
    lines = [
        "| catalog | path | step wall (s), median | steps wall (s) "
        "| step CPU (s), median | peak RSS (MiB) | peak - RSS after inputs (MiB) |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in sorted(results, key=lambda r: (r["catalog"], PATHS.index(r["path"]))):
        lines.append(
            f"| {r['catalog']:,} | {r['path']} | {r['median_s']:.3f} | "
            f"{', '.join(f'{t:.2f}' for t in r['times'])} | {r['cpu_s']:.3f} | "
            f"{r['rss_peak'] / mib:,.0f} | {(r['rss_peak'] - r['rss_inputs']) / mib:,.0f} |"
        )
    return "\n".join(lines)


def _times(large: float, small: float) -> str:
    return f"{large / small:.2f}x" if small > 0 else "n/a"


def ratios(results: list[dict], path: str) -> str:
    """Largest catalog's step time and peak RSS over the smallest's, for one path."""
    rows = sorted((r for r in results if r["path"] == path), key=lambda r: r["catalog"])
    if len(rows) < 2:
        return f"{path}: fewer than two catalog sizes"
    small, large = rows[0], rows[-1]
    step = [r["rss_peak"] - r["rss_inputs"] for r in (large, small)]
    return (
        f"{path}: {large['catalog']:,} / {small['catalog']:,}: step time "
        f"{_times(large['median_s'], small['median_s'])} "
        f"(CPU {_times(large['cpu_s'], small['cpu_s'])}), "
        f"peak RSS {_times(large['rss_peak'], small['rss_peak'])}, step RSS {_times(*step)}"
    )


def catalogs_of(path: str) -> list[int]:
    """The catalogs a path runs at: the floor at one, the old path where it fits in memory."""
    if path == "none":
        return [CATALOGS[0]]  # the floor does not depend on the catalog
    if path == "old":
        return [c for c in CATALOGS if 2 * 4 * BATCH * c <= MEMORY_LIMIT_BYTES]
    return list(CATALOGS)


def main() -> None:
    """Memory per (catalog, path) in fresh processes, then step times per path; the table."""
    print(f"load average before: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    memory = {}
    for path in PATHS:
        skipped = sorted(set(CATALOGS) - set(catalogs_of(path)))
        if path == "old" and skipped:
            print(f"old skipped at {skipped}: two {BATCH} x catalog float32 tensors")
        for catalog in catalogs_of(path):
            memory[catalog, path] = run_child("--memory", str(catalog), path)
            print(f"{catalog:,} {path}: {memory[catalog, path]}", flush=True)
    results = []
    for path in PATHS:
        for r in run_child("--timing", path, *map(str, catalogs_of(path))):
            results.append({**r, **memory[r["catalog"], path]})
            print(f"{r['catalog']:,} {path}: {r}", flush=True)
    serving = run_child("--serving-timing")
    for r in serving:
        r.update(run_child("--serving-memory", str(r["catalog"]), r["path"]))
    print(f"load average after: {os.getloadavg()}; {time.perf_counter() - started:.0f} s in all")
    print(table(results))
    for path in ("new", "old"):
        print(ratios(results, path))
    print(f"\nScoring the whole catalog, {SERVING_QUERIES} queries, bonus alone (forward):\n")
    print(
        "| catalog | path | wall (s), median | CPU (s), median | call peak (MiB) | result (MiB) |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for r in serving:
        print(
            f"| {r['catalog']:,} | {r['path']} | {r['median_s']:.3f} | {r['cpu_s']:.3f} | "
            f"{r['peak_bytes'] / 2**20:,.0f} | {r['output_bytes'] / 2**20:,.0f} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("--") and sys.argv[1] != "--smoke":
        print(json.dumps(child(sys.argv[1:])))
    else:
        main()
