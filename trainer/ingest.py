"""Ingest (ExampleGen): read interactions, drop bad rows (counting them), split, write examples.

Output folder layout (the contract every later step reads):

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

from trainer import buyer_features
from trainer import config as cfg

log = logging.getLogger(__name__)

SPLITS = ("train", "eval", "test")
STATS_FILE = "stats.json"
SCHEMA_FILE = "schema.pbtxt"
CATALOG_FILE = "catalog.parquet"

# Every raw column after ingest, with its dtype in the frames and tf.Examples: the mapped
# source columns plus the point-in-time buyer columns (trainer/buyer_features.py).
STRING_COLUMNS = (*cfg.STRING_COLUMNS, cfg.HISTORY)
FLOAT_COLUMNS = (cfg.QUANTITY, cfg.PRICE, cfg.RECENCY_DAYS, cfg.FREQUENCY, cfg.MONETARY)
INT_COLUMNS = (cfg.TIMESTAMP,)  # seconds since the epoch, UTC
SOURCE_FLOAT_COLUMNS = (cfg.QUANTITY, cfg.PRICE)

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


def split_path(folder: str, split: str, ext: str = "parquet") -> str:
    """Path of one split's file in an ingest output folder."""
    suffix = "tfrecord.gz" if ext == "tfrecord" else ext
    return os.path.join(folder, f"{split}.{suffix}")


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
    if "://" in path:
        import tensorflow as tf  # gfile reads gs:// without another client library

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

    for name in cfg.REQUIRED_COLUMNS:
        drop(f"missing_{name}", frame[name].isna() | (frame[name].str.strip() == ""))

    ts = pd.to_datetime(frame[cfg.TIMESTAMP], format=dataset.timestamp_format, errors="coerce")
    drop(f"bad_{cfg.TIMESTAMP}", ts.isna())

    numbers = {}
    for name in SOURCE_FLOAT_COLUMNS:
        if name in frame:
            numbers[name] = pd.to_numeric(frame[name], errors="coerce")
            drop(f"bad_{name}", numbers[name].isna())
    rules = dataset.cleaning
    if cfg.QUANTITY in numbers and rules.min_quantity is not None:
        drop(
            f"{cfg.QUANTITY}_le_{rules.min_quantity:g}", numbers[cfg.QUANTITY] <= rules.min_quantity
        )
    if cfg.PRICE in numbers and rules.min_price is not None:
        drop(f"{cfg.PRICE}_le_{rules.min_price:g}", numbers[cfg.PRICE] <= rules.min_price)
    if rules.drop_transaction_prefixes and cfg.TRANSACTION_ID in frame:
        prefixes = tuple(rules.drop_transaction_prefixes)
        drop("cancelled", frame[cfg.TRANSACTION_ID].fillna("").str.startswith(prefixes))

    out = pd.DataFrame(index=frame.index[keep])
    for name in cfg.STRING_COLUMNS:
        values = frame.loc[keep, name] if name in frame else pd.Series("", index=out.index)
        out[name] = values.fillna("").astype(str).str.strip()
    for name in (cfg.BUYER_ID, cfg.PRODUCT_ID):
        out[name] = out[name].str.replace(_FLOAT_ID, r"\1", regex=True)  # "17850.0" -> "17850"
    for name in SOURCE_FLOAT_COLUMNS:
        out[name] = numbers[name][keep].astype("float32") if name in numbers else np.float32(0)
    out[cfg.TIMESTAMP] = ts[keep].astype("datetime64[s]").astype("int64")
    stats.rows_kept = len(out)
    if out.empty:
        raise IngestError(
            f"{stats.source}: no usable rows after cleaning (dropped: {stats.rows_dropped})"
        )
    return out.sort_values([cfg.TIMESTAMP, cfg.BUYER_ID], kind="stable").reset_index(drop=True)


def split(frame: pd.DataFrame, rule: cfg.Split) -> dict[str, pd.DataFrame]:
    """Splits cleaned interactions into train / eval / test by the configured strategy."""
    if rule.strategy == "strict_time":
        train_end = pd.Timestamp(rule.train_end).value // 10**9
        eval_end = pd.Timestamp(rule.eval_end).value // 10**9
        ts = frame[cfg.TIMESTAMP]
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
            buyers = frame[cfg.BUYER_ID].unique()
            draw = frame[cfg.BUYER_ID].map(dict(zip(buyers, rng.random(len(buyers)), strict=True)))
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
    grouped = train.groupby(cfg.PRODUCT_ID, sort=True)
    catalog = pd.DataFrame(
        {
            cfg.DESCRIPTION: grouped[cfg.DESCRIPTION].agg(_last_non_empty),
            cfg.PRICE: grouped[cfg.PRICE].median().astype("float32"),
            "train_count": grouped.size().astype("int64"),
        }
    ).reset_index()
    return catalog


def _last_non_empty(values: pd.Series) -> str:
    values = values[values != ""]
    return values.iloc[-1] if len(values) else ""


def raw_feature_spec() -> dict:
    """The tf.io feature spec of the raw examples ingest writes."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in STRING_COLUMNS}
    spec.update({name: tf.io.FixedLenFeature([], tf.float32) for name in FLOAT_COLUMNS})
    spec.update({name: tf.io.FixedLenFeature([], tf.int64) for name in INT_COLUMNS})
    return spec


def write_tfrecords(frame: pd.DataFrame, path: str) -> None:
    """Writes a frame as gzip'd tf.Examples with the raw feature spec."""
    import tensorflow as tf

    strings = {n: frame[n].astype(str).str.encode("utf-8").to_numpy() for n in STRING_COLUMNS}
    floats = {n: frame[n].to_numpy(dtype=np.float32) for n in FLOAT_COLUMNS}
    ints = {n: frame[n].to_numpy(dtype=np.int64) for n in INT_COLUMNS}
    feature, bytes_list = tf.train.Feature, tf.train.BytesList
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(len(frame)):
            features = {n: feature(bytes_list=bytes_list(value=[v[i]])) for n, v in strings.items()}
            features.update(
                {n: feature(float_list=tf.train.FloatList(value=[v[i]])) for n, v in floats.items()}
            )
            features.update(
                {n: feature(int64_list=tf.train.Int64List(value=[v[i]])) for n, v in ints.items()}
            )
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
            )


def write_schema(path: str) -> None:
    """Writes the raw schema as a TFMD Schema text proto."""
    from google.protobuf import text_format
    from tensorflow_transform.tf_metadata import schema_utils

    schema = schema_utils.schema_from_feature_spec(raw_feature_spec())
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
    frame = buyer_features.add_buyer_features(
        frame, config.history_length or buyer_features.DEFAULT_MAX_HISTORY
    )
    parts = split(frame, dataset.split)
    os.makedirs(output_dir, exist_ok=True)
    for name in SPLITS:
        part = parts[name]
        part.to_parquet(split_path(output_dir, name), index=False)
        write_tfrecords(part, split_path(output_dir, name, "tfrecord"))
        stats.rows[name] = len(part)
        stats.buyers[name] = int(part[cfg.BUYER_ID].nunique())
        stats.products[name] = int(part[cfg.PRODUCT_ID].nunique())
        if len(part):
            first, last = pd.to_datetime(part[cfg.TIMESTAMP].agg(["min", "max"]), unit="s")
            stats.time_range[name] = [str(first), str(last)]
    catalog = build_catalog(parts["train"])
    catalog.to_parquet(os.path.join(output_dir, CATALOG_FILE), index=False)
    stats.catalog_size = len(catalog)
    write_schema(os.path.join(output_dir, SCHEMA_FILE))
    with open(os.path.join(output_dir, STATS_FILE), "w", encoding="utf-8") as f:
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
    with open(os.path.join(folder, STATS_FILE), encoding="utf-8") as f:
        return json.load(f)
