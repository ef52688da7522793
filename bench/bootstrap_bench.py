"""The paired bootstrap of one evaluation: seconds per run against the number of buyers.

``trainer.evaluate.intervals_on_test`` (what the evaluate step calls: the
contract's 2,000 resamples, every scorer's recall@{10,50,100} with its interval, the lifts over
both baselines with intervals, Holm-corrected verdicts) on per-buyer rows shaped like Online
Retail's test split (target pairs per buyer geometric with mean ~14, 44% repeat targets,
recall@100 around 0.35), for the model, the selected model (``training.refit``) and two
baselines. Each size is timed five times after one warm-up call; the table gives the median and
the slowest. Target: under 1 s per run for 10,000 buyers (the smoke size's row says it too).

Run: ``python -m bench bootstrap``; prints a Markdown table; bench/RESULTS.md is written by
hand. Smoke size (``--smoke``): 500 buyers, one timed call.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

from bench import size

BUYERS = size((1_000, 10_000, 50_000), (500,))
REPEATS = size(5, 1)
TARGET_S = 1.0


def per_buyer_rows(buyers: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Synthetic per-buyer test rows of the model, the selected model and the baselines."""
    from trainer import contract

    rng = np.random.default_rng(seed)
    pairs = rng.geometric(0.07, buyers)
    rates = {
        contract.SCORER_MODEL: (0.09, 0.27, 0.37),
        contract.SCORER_SELECTED: (0.087, 0.26, 0.36),
        contract.BASELINE_POPULAR: (0.026, 0.1, 0.17),
        contract.BASELINE_OWN_HISTORY: (0.09, 0.25, 0.34),
    }
    rows = {}
    for scorer, by_k in rates.items():
        data = {
            contract.SCORER: scorer,
            contract.BUYER_ID: [str(12_000 + i) for i in range(buyers)],
            contract.PAIRS: pairs.astype(np.int32),
        }
        for k, rate in zip(contract.RECALL_KS, by_k, strict=True):
            data[contract.hits_column(k)] = rng.binomial(pairs, rate).astype(np.int32)
        rows[scorer] = pd.DataFrame(data)
    return rows


def main() -> None:
    from trainer import evaluate

    print("| buyers | median s / run | slowest s | target |")
    print("|---:|---:|---:|---|")
    for buyers in BUYERS:
        rows = per_buyer_rows(buyers)
        evaluate.intervals_on_test(rows)  # warm-up
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            evaluate.intervals_on_test(rows)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        verdict = "met" if median < TARGET_S else "missed"
        target = f"< {TARGET_S:g} s: {verdict}" if buyers in (10_000, BUYERS[0]) else ""
        print(f"| {buyers:,} | {median:.3f} | {max(times):.3f} | {target} |")


if __name__ == "__main__":
    main()
