"""The ranking stage's cost: candidates, features, the fits, at 4k and 25k products.

What ``training.ranking_stage`` adds to an evaluate step (trainer/rank): building the
validation and test candidate frames (``candidate_frame``, ``with_labels``), then
``run_stage`` (two cross-fitted fits on at most ``MAX_FIT_BUYERS`` validation buyers, the
rest of them and the test candidates ranked ``CHUNK_BUYERS`` at a time), the frames built per
asked queries as the evaluate step builds them. The stage's time includes building its frames. Its size is evaluated buyers x candidates (the retrieval stage's 100 and the
strong baseline's ``contract.STRONG_LIST_K``), never the catalog: the cases hold the buyers
fixed and grow the catalog, then grow the buyers.

The data is ``bench.strong_bench.synthetic`` (Zipf popularity, buyers re-buying from personal
favourites). The lists are drawn, not computed (the stage's cost does not depend on how good
they are, and TIFU-KNN at 25k products takes minutes, ``python -m bench strong``): each buyer's
retrieval list is 100 products, its favourites first; the strong list ``STRONG_LIST_K``
products by popularity, its own products first. Each case runs in a fresh subprocess; memory
is its peak RSS (``VmHWM``) minus the RSS once the data and lists were made.

Run: ``python -m bench rank``; ``--smoke``: one small case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import smoke

ROOT = Path(__file__).resolve().parent.parent
# (products, buyers, purchases): Online Retail's catalog and evaluated buyers (~2,400), the same
# buyers over 25k products, then four times the buyers.
CASES = [(3_500, 3_000, 250_000), (25_000, 3_000, 250_000), (25_000, 12_000, 1_000_000)]
SMOKE_CASES = [(400, 200, 8_000)]


def _lists(split, before, catalog, width, rng):
    """(buyers, retrieval rows, retrieval scores, strong rows, strong scores) for a split."""
    import numpy as np

    from trainer import contract, retrieval

    index = retrieval.catalog_index(catalog)
    buyers = np.array(sorted(set(split[contract.BUYER_ID]) & set(before[contract.BUYER_ID])))
    known = before[before[contract.PRODUCT_ID].isin(index)]
    own = known.groupby(contract.BUYER_ID)[contract.PRODUCT_ID].agg(lambda s: list(set(s)))
    counts = known[contract.PRODUCT_ID].map(index).value_counts()
    pop = np.concatenate([counts.index.to_numpy(np.int64),
                          np.setdiff1d(np.arange(len(catalog)), counts.index.to_numpy())])  # fmt: skip
    n = len(catalog)
    r_rows = np.empty((len(buyers), 100), np.int64)
    s_rows = np.empty((len(buyers), min(width, n)), np.int64)
    for i, b in enumerate(buyers):
        mine = np.array([index[p] for p in own.get(b, [])], np.int64)
        rest = pop[~np.isin(pop, mine)]
        r_rows[i] = np.concatenate([rng.permutation(mine), rng.permutation(rest[:300])])[:100]
        s_rows[i] = np.concatenate([mine, rest])[: s_rows.shape[1]]
    r_scores = -np.sort(rng.random(r_rows.shape), axis=1)
    s_scores = np.sort(rng.random(s_rows.shape), axis=1)[:, ::-1]
    return buyers, r_rows, r_scores, s_rows, s_scores


def run_case(products: int, buyers: int, rows: int) -> dict:
    """One case in this process: the times of each part and the peak memory above the data."""
    import numpy as np
    import pandas as pd

    from bench.strong_bench import synthetic
    from bench.topk import peak_rss, reset_peak_rss
    from trainer import contract, inputs, rank, retrieval

    rng = np.random.default_rng(0)
    train, eval_, test, catalog = synthetic(products, buyers, rows)
    history = pd.concat([train, eval_])
    val_set = retrieval.build_eval_set(eval_, train, catalog)
    test_set = retrieval.build_eval_set(test, train, catalog)
    width = contract.STRONG_LIST_K
    made = {
        "val": _lists(eval_, train, catalog, width, rng),
        "test": _lists(test, history, catalog, width, rng),
    }
    base = reset_peak_rss()
    out = {"products": products, "catalog": len(catalog), "buyers": buyers}
    window = rank.window_days(eval_)
    sources, built = {}, {"val": 0, "test": 0}
    for split, es, before, targets in (
        ("val", val_set, train, eval_),
        ("test", test_set, history, test),
    ):
        b, rr, rs, sr, ss = made[split]
        assert list(b) == list(es.buyers)
        candidates = rank.Candidates(es.buyers, rr, rs, sr, ss)
        past = rank.history(before, catalog, inputs.as_of_time(before, targets), window)

        # As the evaluate step builds them (trainer/evaluate/scored.py): per asked queries.
        def frame_of(queries, c=candidates, past=past, es=es, split=split):
            frame = rank.candidate_frame(c.take(queries), past)
            built[split] += len(frame)
            if split == "val":
                frame = rank.with_labels(frame, [es.positives[q] for q in queries])
            return frame

        sources[split] = frame_of
    out["val_buyers"], out["test_buyers"] = len(val_set.buyers), len(test_set.buyers)
    started = time.perf_counter()
    ranked = rank.run_stage(
        sources["val"], val_set, made["val"][1], sources["test"], len(test_set.buyers)
    )
    out["stage_s"] = time.perf_counter() - started
    out["val_rows"], out["test_rows"] = built["val"], built["test"]
    out["fit_buyers"] = ranked.record["fit_buyers"]
    out["kept"] = ranked.kept
    out["peak_mib"] = (peak_rss() - base) / 2**20
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(run_case(*(int(v) for v in sys.argv[2:5]))))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for case in SMOKE_CASES if smoke() else CASES:
        done = subprocess.run(
            [sys.executable, "-m", "bench.rank_bench", "--case", *map(str, case)],
            capture_output=True, text=True, env=env, cwd=ROOT, check=True,
        )  # fmt: skip
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| products (catalog) | buyers | val / test buyers (fit on) | candidate rows val / test "
          "| stage (s) | peak MiB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['products']:,} ({r['catalog']:,}) | {r['buyers']:,} | "
            f"{r['val_buyers']:,} / {r['test_buyers']:,} ({r['fit_buyers']:,}) | "
            f"{r['val_rows']:,} / {r['test_rows']:,} | "
            f"{r['stage_s']:.1f} | {r['peak_mib']:,.0f} |"
        )


if __name__ == "__main__":
    main()
