"""The strong baselines of an ingest output, computed once for every run that evaluates on it.

TIFU-KNN (repeat domains) or EASE / item-kNN (``training.exclude_seen``) are tuned on the
validation window and score the eval and test buyers (trainer/retrieval/strong.py). They
depend only on the splits, so the ingest step, which every training and evaluation of a
sweep shares (and which the pipeline may serve from cache), writes them next to the splits:
``strong_baselines.parquet`` (top-k catalog rows per split, baseline and buyer) and
``strong_baselines.json`` (the parameters chosen, the validation recall of each grid point,
the time taken). The evaluate step reads them; nothing is computed per run.
"""

from __future__ import annotations

import json
import logging
import time

import pandas as pd

from trainer import config as cfg
from trainer import contract, layout, retrieval

log = logging.getLogger(__name__)


def write_strong_baselines(config: cfg.ExperimentConfig, ingest_dir: str) -> dict:
    """Tunes and scores the domain's strong baseline; writes the lists and the record."""
    started = time.perf_counter()
    train, eval_, test = (
        pd.read_parquet(layout.split_path(ingest_dir, split)) for split in ("train", "eval", "test")
    )
    catalog = pd.read_parquet(layout.catalog_path(ingest_dir))
    lists, record = retrieval.strong_baselines(
        train, eval_, test, catalog, config.training.exclude_seen
    )
    if not lists.empty:
        lists.to_parquet(layout.strong_baselines_path(ingest_dir), index=False)
    record["seconds"] = time.perf_counter() - started
    record["catalog_size"] = len(catalog)
    with open(layout.strong_baselines_path(ingest_dir, record=True), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    log.info(
        "strong baseline %s: %s, validation recall@%d %.4f (%.1f s)",
        record.get("baseline"),
        record.get("params") or record.get("skipped"),
        max(contract.RECALL_KS),
        record.get("val_recall", float("nan")),
        record["seconds"],
    )
    return record


def read_strong_baselines(ingest_dir: str) -> pd.DataFrame:
    """The lists ``write_strong_baselines`` wrote (empty when it wrote none: older outputs)."""
    path = layout.strong_baselines_path(ingest_dir)
    try:
        return pd.read_parquet(path)
    except (FileNotFoundError, OSError):
        log.warning("no strong baselines in %s (an ingest output from before them)", ingest_dir)
        return pd.DataFrame()
