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
import gzip
import io
import json
import logging
import os
import re

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import buyer_features, contract, inputs, layout
from trainer import config as cfg

log = logging.getLogger(__name__)

# The source's string and number columns (the timestamp is parsed on its own).
SOURCE_STRING_COLUMNS = tuple(
    c for c in contract.SOURCE_COLUMNS if contract.RAW_COLUMN_TYPES[c] == contract.STRING
)
SOURCE_FLOAT_COLUMNS = tuple(
    c for c in contract.SOURCE_COLUMNS if contract.RAW_COLUMN_TYPES[c] == contract.FLOAT
)

_FLOAT_ID = re.compile(r"^(\d+)\.0+$")


class IngestError(ValueError):
    """The source cannot be read or has no usable rows."""


@dataclasses.dataclass
class IngestStats:
    """What ingest read, dropped and kept; written to stats.json and logged to MLflow."""

    source: str
    rows_read: int = 0
    rows_dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_kept: int = 0
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    buyers: dict[str, int] = dataclasses.field(default_factory=dict)
    products: dict[str, int] = dataclasses.field(default_factory=dict)
    time_range: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    catalog_size: int = 0


def read_source(dataset: cfg.Dataset, source: str | None = None) -> pd.DataFrame:
    """Reads the mapped columns of a CSV or Parquet source (local path or gs://) as strings."""
    path = source or dataset.source
    if path.startswith("bq://"):
        raise IngestError(f"{path}: BigQuery sources are not supported yet; export to CSV/Parquet")
    wanted = {src: name for name, src in dataset.columns.items()}
    try:
        data = _read_bytes(path)
        if path.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(io.BytesIO(data))
            frame = frame.astype({c: "string" for c in frame.columns if c in wanted})
        else:
            if path.endswith(".gz"):
                data = gzip.decompress(data)
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8"
            )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, gzip.BadGzipFile) as err:
        raise IngestError(f"{path}: cannot read: {err}") from err
    missing = [src for src in wanted if src not in frame.columns]
    if missing:
        raise IngestError(
            f"{path}: column(s) {', '.join(missing)} named in dataset.columns are not in the file "
            f"(it has: {', '.join(map(str, frame.columns))})"
        )
    return frame[list(wanted)].rename(columns=wanted)


def _read_bytes(path: str) -> bytes:
    if "://" in path:  # gfile reads gs:// without another client library
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def clean(frame: pd.DataFrame, dataset: cfg.Dataset, stats: IngestStats) -> pd.DataFrame:
    """Drops unusable rows, counting each under its first failing reason; types the columns."""
    stats.rows_read = len(frame)
    keep = pd.Series(True, index=frame.index)

    def drop(reason: str, bad: pd.Series) -> None:
        nonlocal keep
        newly = bad & keep
        if newly.any():
            stats.rows_dropped[reason] = stats.rows_dropped.get(reason, 0) + int(newly.sum())
        keep &= ~bad

    for name in contract.REQUIRED_COLUMNS:
        drop(f"missing_{name}", frame[name].isna() | (frame[name].str.strip() == ""))

    ts = pd.to_datetime(frame[contract.TIMESTAMP], format=dataset.timestamp_format, errors="coerce")
    drop(f"bad_{contract.TIMESTAMP}", ts.isna())

    numbers = {}
    for name in SOURCE_FLOAT_COLUMNS:
        if name in frame:
            numbers[name] = pd.to_numeric(frame[name], errors="coerce")
            drop(f"bad_{name}", numbers[name].isna())
    rules = dataset.cleaning
    if contract.QUANTITY in numbers and rules.min_quantity is not None:
        drop(
            f"{contract.QUANTITY}_le_{rules.min_quantity:g}",
            numbers[contract.QUANTITY] <= rules.min_quantity,
        )
    if contract.PRICE in numbers and rules.min_price is not None:
        drop(f"{contract.PRICE}_le_{rules.min_price:g}", numbers[contract.PRICE] <= rules.min_price)
    if rules.drop_transaction_prefixes and contract.TRANSACTION_ID in frame:
        prefixes = tuple(rules.drop_transaction_prefixes)
        drop("cancelled", frame[contract.TRANSACTION_ID].fillna("").str.startswith(prefixes))

    out = pd.DataFrame(index=frame.index[keep])
    for name in SOURCE_STRING_COLUMNS:
        values = frame.loc[keep, name] if name in frame else pd.Series("", index=out.index)
        out[name] = values.fillna("").astype(str).str.strip()
    for name in (contract.BUYER_ID, contract.PRODUCT_ID):
        out[name] = out[name].str.replace(_FLOAT_ID, r"\1", regex=True)  # "17850.0" -> "17850"
    for name in SOURCE_FLOAT_COLUMNS:
        out[name] = numbers[name][keep].astype("float32") if name in numbers else np.float32(0)
    out[contract.TIMESTAMP] = ts[keep].astype("datetime64[s]").astype("int64")
    stats.rows_kept = len(out)
    if out.empty:
        raise IngestError(
            f"{stats.source}: no usable rows after cleaning (dropped: {stats.rows_dropped})"
        )
    return out.sort_values([contract.TIMESTAMP, contract.BUYER_ID], kind="stable").reset_index(
        drop=True
    )


def split(frame: pd.DataFrame, rule: cfg.Split) -> dict[str, pd.DataFrame]:
    """Splits cleaned interactions into train / eval / test by the configured strategy."""
    if rule.strategy == "strict_time":
        train_end = pd.Timestamp(rule.train_end).value // 10**9
        eval_end = pd.Timestamp(rule.eval_end).value // 10**9
        ts = frame[contract.TIMESTAMP]
        masks = {
            "train": ts < train_end,
            "eval": (ts >= train_end) & (ts < eval_end),
            "test": ts >= eval_end,
        }
    else:
        rng = np.random.default_rng(rule.seed)
        if rule.strategy == "random":
            draw = pd.Series(rng.random(len(frame)), index=frame.index)
        else:  # buyer_holdout: every interaction of a buyer lands in the same split
            buyers = frame[contract.BUYER_ID].unique()
            draw = frame[contract.BUYER_ID].map(
                dict(zip(buyers, rng.random(len(buyers)), strict=True))
            )
        test_cut = 1.0 - rule.test_fraction
        eval_cut = test_cut - rule.eval_fraction
        masks = {
            "train": draw < eval_cut,
            "eval": (draw >= eval_cut) & (draw < test_cut),
            "test": draw >= test_cut,
        }
    parts = {name: frame[mask].reset_index(drop=True) for name, mask in masks.items()}
    if parts["train"].empty:
        raise IngestError(f"split {rule.strategy}: the train split is empty")
    return parts


def build_catalog(train: pd.DataFrame) -> pd.DataFrame:
    """One row per product seen in train: its latest description, median price, popularity."""
    grouped = train.groupby(contract.PRODUCT_ID, sort=True)
    catalog = pd.DataFrame(
        {
            contract.DESCRIPTION: grouped[contract.DESCRIPTION].agg(_last_non_empty),
            contract.PRICE: grouped[contract.PRICE].median().astype("float32"),
            contract.TRAIN_COUNT: grouped.size().astype("int64"),
        }
    ).reset_index()
    return catalog


def _last_non_empty(values: pd.Series) -> str:
    values = values[values != ""]
    return values.iloc[-1] if len(values) else ""


def write_tfrecords(frame: pd.DataFrame, path: str) -> None:
    """Writes a frame as gzip'd tf.Examples with the raw feature spec."""
    kinds = contract.RAW_COLUMN_TYPES
    numbers = contract.columns_of_type(contract.FLOAT) + contract.columns_of_type(contract.INT)
    columns = inputs.raw_arrays(frame, numbers)
    # Strings are encoded once per column (vectorised), not once per row.
    for name in contract.columns_of_type(contract.STRING):
        columns[name] = frame[name].astype(str).str.encode("utf-8").to_numpy()
    make = {
        contract.STRING: lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])),
        contract.FLOAT: lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=[v])),
        contract.INT: lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])),
    }
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(len(frame)):
            features = {name: make[kinds[name]](values[i]) for name, values in columns.items()}
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
            )


def write_schema(path: str) -> None:
    """Writes the raw schema as a TFMD Schema text proto."""
    from google.protobuf import text_format
    from tensorflow_transform.tf_metadata import schema_utils

    schema = schema_utils.schema_from_feature_spec(inputs.raw_feature_spec())
    with open(path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(schema))


def run_ingest(config: cfg.ExperimentConfig, output_dir: str, source: str = "") -> IngestStats:
    """Reads, cleans and splits the dataset of an experiment; writes the ingest folder.

    Args:
        config: The validated experiment config.
        output_dir: Folder to write (created if missing).
        source: Overrides ``config.dataset.source`` when not empty.

    Returns:
        The counts written to stats.json.
    """
    dataset = config.dataset
    stats = IngestStats(source=source or dataset.source)
    frame = clean(read_source(dataset, source or None), dataset, stats)
    # Point-in-time columns over the whole time line: each row sees only earlier purchases.
    frame = buyer_features.add_buyer_features(frame, config.history_length)
    parts = split(frame, dataset.split)
    os.makedirs(output_dir, exist_ok=True)
    for name in contract.SPLITS:
        part = parts[name]
        part.to_parquet(layout.split_path(output_dir, name), index=False)
        write_tfrecords(part, layout.split_path(output_dir, name, "tfrecord"))
        stats.rows[name] = len(part)
        stats.buyers[name] = int(part[contract.BUYER_ID].nunique())
        stats.products[name] = int(part[contract.PRODUCT_ID].nunique())
        if len(part):
            first, last = pd.to_datetime(part[contract.TIMESTAMP].agg(["min", "max"]), unit="s")
            stats.time_range[name] = [str(first), str(last)]
    catalog = build_catalog(parts["train"])
    catalog.to_parquet(layout.catalog_path(output_dir), index=False)
    stats.catalog_size = len(catalog)
    write_schema(layout.schema_path(output_dir))
    with open(layout.stats_path(output_dir), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(stats), f, indent=2)
    log.info(
        "ingest: read %d rows, kept %d, dropped %s; rows per split %s",
        stats.rows_read,
        stats.rows_kept,
        stats.rows_dropped,
        stats.rows,
    )
    return stats


def load_stats(folder: str) -> dict:
    """Reads stats.json of an ingest folder."""
    with open(layout.stats_path(folder), encoding="utf-8") as f:
        return json.load(f)
