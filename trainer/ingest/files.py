"""Ingest (ExampleGen): read interactions, drop bad rows (counting them), split, write examples.

Output folder layout (the contract every later step reads; paths in trainer/layout.py):

    {split}.tfrecord.gz   raw tf.Examples per split (train / eval / test), for tf.Transform
    {split}.parquet       the same rows as a frame, for evaluation and baselines
    catalog.parquet       one row per product seen in train (the retrieval catalog)
    schema.pbtxt          the raw feature schema (TFMD), as TFX's SchemaGen would write
    stats.json            rows read, rows dropped per reason, rows / buyers / products per split
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import tempfile

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract, inputs, sources
from trainer.ingest import bigquery as ingest_bigquery
from trainer.ingest.baselines import write_strong_baselines
from trainer.ingest.output import IngestStats, Spill, SplitOutputs, no_rows_error, write_tail
from trainer.sources import ROW, IngestError, ParseCheck, iter_chunks, read_source

__all__ = ["IngestError", "IngestStats", "clean", "read_source", "run_ingest", "split"]

log = logging.getLogger(__name__)


_FLOAT_ID = re.compile(r"^(\d+)\.0+$")
PARTITION_BYTES = 32 << 20


def clean(
    frame: pd.DataFrame,
    dataset: cfg.Dataset,
    stats: IngestStats,
    checks: ParseCheck | None = None,
) -> pd.DataFrame:
    """Drops unusable rows, counting each under its first failing reason; types the columns.

    Called once per chunk: the counts in ``stats`` and ``checks`` add up over the calls.
    Returns the kept rows in source order (the caller sorts what it holds).

    Raises:
        IngestError: most values of the timestamp or a number column do not parse.
    """
    own_checks = checks is None
    checks = checks or ParseCheck(stats.source, dataset)
    stats.rows_read += len(frame)
    keep = pd.Series(True, index=frame.index)

    def drop(reason: str, bad: pd.Series) -> None:
        nonlocal keep
        newly = bad & keep
        if newly.any():
            stats.rows_dropped[reason] = stats.rows_dropped.get(reason, 0) + int(newly.sum())
        keep &= ~bad

    for name in contract.REQUIRED_COLUMNS:
        drop(contract.drop_missing(name), frame[name].isna() | (frame[name].str.strip() == ""))

    ts = sources.parse_timestamps(frame[contract.TIMESTAMP], dataset.timestamp_format)
    checks.add(contract.TIMESTAMP, frame.loc[keep, contract.TIMESTAMP], ts[keep].isna())
    drop(contract.drop_unparsable(contract.TIMESTAMP), ts.isna())

    numbers = {}
    for name in contract.SOURCE_FLOAT_COLUMNS:
        if name in frame:
            numbers[name] = pd.to_numeric(frame[name], errors="coerce")
            present = keep & frame[name].notna()
            checks.add(name, frame.loc[present, name], numbers[name][present].isna())
            drop(contract.drop_unparsable(name), numbers[name].isna())
    checks.check()
    rules = dataset.cleaning
    if contract.QUANTITY in numbers and rules.min_quantity is not None:
        drop(
            contract.drop_at_most(contract.QUANTITY, rules.min_quantity),
            numbers[contract.QUANTITY] <= rules.min_quantity,
        )
    if contract.PRICE in numbers and rules.min_price is not None:
        drop(
            contract.drop_at_most(contract.PRICE, rules.min_price),
            numbers[contract.PRICE] <= rules.min_price,
        )
    if rules.drop_transaction_prefixes and contract.TRANSACTION_ID in frame:
        prefixes = tuple(rules.drop_transaction_prefixes)
        drop(
            contract.DROP_CANCELLED,
            frame[contract.TRANSACTION_ID].fillna("").str.startswith(prefixes),
        )

    out = _typed(frame, keep, numbers, ts)
    stats.rows_kept += len(out)
    if own_checks and out.empty:
        raise no_rows_error(stats)
    return out.reset_index(drop=True)


def _typed(frame: pd.DataFrame, keep: pd.Series, numbers: dict, ts: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index[keep])
    for name in contract.SOURCE_STRING_COLUMNS:
        values = frame.loc[keep, name] if name in frame else pd.Series("", index=out.index)
        out[name] = values.fillna("").astype(str).str.strip()
    for name in (contract.BUYER_ID, contract.PRODUCT_ID):
        out[name] = out[name].str.replace(_FLOAT_ID, r"\1", regex=True)  # "17850.0" -> "17850"
    for name in contract.SOURCE_FLOAT_COLUMNS:
        out[name] = numbers[name][keep].astype("float32") if name in numbers else np.float32(0)
    out[contract.TIMESTAMP] = ts[keep].astype("datetime64[s]").astype("int64")
    out[ROW] = frame.loc[keep, ROW] if ROW in frame else np.arange(len(frame))[keep.to_numpy()]
    return out


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Time order; ties by buyer, then by position in the source (the same in every path)."""
    return frame.sort_values([contract.TIMESTAMP, contract.BUYER_ID, ROW]).reset_index(drop=True)


def uniform_draws(keys: pd.Series, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per key, fixed by (key, seed): the same in every ingest path.

    The first 52 bits of MD5("<key>:<seed>"), a hash BigQuery computes too (``draw`` in
    trainer/ingest/bigquery_sql.py), so a buyer lands in the same split whichever reads it.
    """
    codes, uniques = pd.factorize(keys)
    suffix = f":{seed}".encode()
    draws = np.fromiter(
        (int(hashlib.md5(str(k).encode() + suffix).hexdigest()[:13], 16) for k in uniques),
        dtype=np.float64,
        count=len(uniques),
    )
    return draws[codes] / float(1 << 52)


def split(frame: pd.DataFrame, rule: cfg.Split) -> dict[str, pd.DataFrame]:
    """Splits cleaned interactions into train / eval / test by the configured strategy.

    Each row's split depends on that row alone (its time, its buyer, or its position in the
    source), so splitting chunk by chunk or partition by partition gives the same result.
    """
    if rule.strategy == "strict_time":
        train_end, eval_end = rule.time_bounds()
        ts = frame[contract.TIMESTAMP]
        masks = {
            "train": ts < train_end,
            "eval": (ts >= train_end) & (ts < eval_end),
            "test": ts >= eval_end,
        }
    else:
        # buyer_holdout: every interaction of a buyer lands in the same split.
        key = frame[ROW] if rule.strategy == "random" else frame[contract.BUYER_ID]
        draw = uniform_draws(key, rule.seed)
        test_cut = 1.0 - rule.test_fraction
        eval_cut = test_cut - rule.eval_fraction
        masks = {
            "train": draw < eval_cut,
            "eval": (draw >= eval_cut) & (draw < test_cut),
            "test": draw >= test_cut,
        }
    return {name: frame[mask].reset_index(drop=True) for name, mask in masks.items()}


def run_ingest(
    config: cfg.ExperimentConfig,
    output_dir: str,
    source: str = "",
    partitions: int = 0,
    output_uri: str = "",
    strong_baselines: bool = True,
) -> IngestStats:
    """Reads, cleans and splits the dataset of an experiment; writes the ingest folder.

    The source is read ``dataset.chunk_rows`` rows at a time and spilled by buyer partition
    (trainer/ingest/output.py); ``chunk_rows: 0`` holds the whole source in memory instead.
    Both give the same rows, buyer columns, catalog and counts.

    Args:
        config: The validated experiment config.
        output_dir: Folder to write (created if missing).
        source: Overrides ``config.dataset.source`` when not empty.
        partitions: Buyer partitions of the chunked path; 0 sizes them from the source.
        output_uri: ``output_dir`` as a URI (a KFP artifact's ``.uri``): where BigQuery
            exports a ``bq://`` source's splits (trainer/ingest/bigquery.py).
        strong_baselines: Also tune and score the domain's strong baseline on the splits
            (trainer/ingest/baselines.py); what every evaluation of these splits reports.

    Returns:
        The counts written to stats.json.

    Raises:
        ConfigError: the source is missing, unreadable or lacks a mapped column.
        IngestError: (a ConfigError) most timestamps or numbers do not parse, nothing is
            left after cleaning, or a split has no rows or nothing train knows.
    """
    if source.startswith(cfg.BIGQUERY_PREFIX):
        config = dataclasses.replace(
            config, dataset=dataclasses.replace(config.dataset, source=source)
        )
    if config.dataset.is_bigquery:
        stats = _run_bigquery(config, output_dir, output_uri or output_dir)
    else:
        stats = _run_files(config, output_dir, source, partitions)
    if strong_baselines:
        write_strong_baselines(config, output_dir)
    return stats


def _run_files(
    config: cfg.ExperimentConfig, output_dir: str, source: str, partitions: int
) -> IngestStats:
    dataset = config.dataset
    path = source or dataset.source
    sources.check_source(config, source)
    stats = IngestStats(source=path)
    checks = ParseCheck(path, dataset)
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ingest-") as spill_dir:
        if dataset.chunk_rows:
            count = partitions or _partition_count(path)
            buyers = Spill(os.path.join(spill_dir, "buyers"), contract.BUYER_ID, count)
            for chunk in iter_chunks(dataset, source, dataset.chunk_rows):
                buyers.add(clean(chunk, dataset, stats, checks))
            products = Spill(os.path.join(spill_dir, "products"), contract.PRODUCT_ID, count)
            outputs = SplitOutputs(output_dir, dataset.split, products)
        else:
            buyers = [clean(read_source(dataset, source), dataset, stats, checks)]
            outputs = SplitOutputs(output_dir, dataset.split)
        if not stats.rows_kept:
            raise no_rows_error(stats)
        try:
            for i, part in enumerate(buyers, 1):
                outputs.add(_split_partition(part, config))
                _log_progress(i, len(buyers), dict(outputs.rows))
        finally:
            outputs.close()
        outputs.check(path)
        catalog = outputs.catalog()
    stats.fill(outputs.counts(), outputs.times, len(catalog))
    write_tail(output_dir, catalog, stats)
    return stats


def _run_bigquery(config: cfg.ExperimentConfig, output_dir: str, output_uri: str) -> IngestStats:
    if not output_uri.startswith("gs://"):
        raise IngestError(
            config.dataset.source,
            "dataset.source",
            f"BigQuery exports the splits to Cloud Storage, and this step's output is "
            f"{output_uri!r}: run the pipeline with a gs:// pipeline root (Vertex), or give "
            "`python -m trainer` --export-uri gs://..., or export the table to files",
        )
    return ingest_bigquery.run_bigquery_ingest(config, output_dir, output_uri)


def _log_progress(done: int, total: int, rows: dict) -> None:
    # About ten lines whatever the number of partitions.
    if done == total or done % -(-total // 10) == 0:
        log.info("ingest: %d/%d buyer partitions written, rows so far %s", done, total, rows)


def _split_partition(frame: pd.DataFrame, config: cfg.ExperimentConfig) -> dict:
    # Point-in-time columns over the whole time line: each row sees only earlier purchases.
    frame = inputs.add_buyer_features(sort_rows(frame), config.history_length)
    return split(frame, config.dataset.split)


def _partition_count(path: str) -> int:
    # Aim at PARTITION_BYTES of CSV text per partition (gzip'd CSV is ~8x smaller on disk).
    size = sum(
        sources.source_bytes(f) * (8 if f.endswith(".gz") else 1)
        for f in sources.source_files(path)
    )
    return max(1, min(1024, math.ceil(size / PARTITION_BYTES)))
