"""The strong baselines' cost: TIFU-KNN, EASE and item-kNN at 4k and 25k products.

What the ingest step adds per ingest output (trainer/retrieval/strong.py): tuning on the
validation window over the grid, then scoring the eval and test buyers. Each case runs in a
fresh subprocess; memory is its peak RSS (``VmHWM``, ``bench.topk.peak_rss``) minus the RSS
after the data was loaded.

- Online Retail (3,508 products, 4,338 buyers): TIFU-KNN (its domain) and EASE (what an
  ``exclude_seen`` run of the same data would get).
- Synthetic 25,000 products, 20,000 buyers, 1.2 M purchases (Zipf popularity, each buyer
  re-buying from a personal set): TIFU-KNN and item-kNN (EASE's 25,000^2 item matrix, 2.5 GB
  in float32 and twice that while inverted in float64, is what item-kNN replaces above
  ``EASE_MAX_ITEMS``).

Run: ``python -m bench strong``; ``--smoke``: a 400-product synthetic case only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import size, smoke

ROOT = Path(__file__).resolve().parent.parent
INGEST = ROOT / ".local" / "bench" / "resume" / "full" / "ingest"  # the resume bench's cache


def synthetic(products: int, buyers: int, rows: int, seed: int = 0):
    """Train / eval / test logs and a catalog of ``products``, Zipf-popular, repeat-heavy."""
    import numpy as np
    import pandas as pd

    from trainer import contract

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, products + 1) ** 1.1
    weights /= weights.sum()
    favourites = rng.choice(products, size=(buyers, 8), p=weights)
    buyer = rng.integers(0, buyers, rows)
    own = rng.random(rows) < 0.6
    product = np.where(
        own, favourites[buyer, rng.integers(0, 8, rows)], rng.choice(products, rows, p=weights)
    )
    day = rng.integers(0, 365, rows)
    frame = pd.DataFrame(
        {
            contract.BUYER_ID: [f"b{b}" for b in buyer],
            contract.PRODUCT_ID: [f"p{p}" for p in product],
            contract.TIMESTAMP: day.astype(np.int64) * 86_400,
        }
    )
    train, eval_, test = frame[day < 300], frame[(day >= 300) & (day < 330)], frame[day >= 330]
    catalog = pd.DataFrame({contract.PRODUCT_ID: sorted(set(train[contract.PRODUCT_ID]))})
    return train, eval_, test, catalog


def case(name: str) -> dict:
    """One measurement, in this (fresh) process."""
    import time

    import pandas as pd

    from bench.topk import peak_rss
    from trainer import layout, retrieval

    if name.startswith("online_retail"):
        train, eval_, test = (
            pd.read_parquet(layout.split_path(str(INGEST), s)) for s in ("train", "eval", "test")
        )
        catalog = pd.read_parquet(layout.catalog_path(str(INGEST)))
    else:
        products = int(name.split("-")[1])
        train, eval_, test, catalog = synthetic(
            products, size(20_000, 400), size(1_200_000, 20_000)
        )
    exclude_seen = name.endswith("exclude_seen")
    loaded = peak_rss()
    started = time.perf_counter()
    _, record = retrieval.strong_baselines(train, eval_, test, catalog, exclude_seen)
    return {
        "case": name,
        "baseline": record["baseline"],
        "products": len(catalog),
        "buyers": int(train[train.columns[0]].nunique()),
        "grid_points": len(record.get("grid", [])),
        "tune_s": record.get("seconds"),
        "score_s": record.get("scoring_seconds"),
        "total_s": time.perf_counter() - started,
        "peak_mib": (peak_rss() - loaded) / 2**20,
        "val_recall_at_100": record.get("val_recall"),
        "params": record.get("params"),
    }


def main() -> list[dict]:
    cases = (
        ["synthetic-400", "synthetic-400-exclude_seen"]
        if smoke()
        else ["online_retail", "online_retail-exclude_seen", "synthetic-25000",
              "synthetic-25000-exclude_seen"]
    )  # fmt: skip
    if not smoke() and not (INGEST / "train.parquet").exists():
        raise SystemExit(f"no Online Retail ingest at {INGEST}: run `python -m bench resume` first")
    results = []
    for name in cases:
        out = subprocess.run(
            [sys.executable, "-m", "bench.strong_bench", "--case", name],
            capture_output=True, text=True, check=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "\n| case | baseline | products | buyers | grid | tune (s) | score (s) | peak MiB | val R@100 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['baseline']} | {r['products']:,} | {r['buyers']:,} | "
              f"{r['grid_points']} | {r['tune_s']:.1f} | {r['score_s']:.1f} | {r['peak_mib']:.0f} | "
              f"{r['val_recall_at_100']:.4f} |")  # fmt: skip
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        print(json.dumps(case(sys.argv[2]), default=str))
    else:
        main()
