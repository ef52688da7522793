"""Ingest's outputs written part by part, and the buyer partitions that bound its memory.

Written: the splits (Parquet + TFRecords), their counts and checks, the catalog.

The point-in-time buyer columns need every row of a buyer in time order, and the catalog
needs every train row of a product. Cleaned chunks are therefore spilled to Parquet files
partitioned by a hash of the buyer (and train rows again by a hash of the product); each
partition is then processed on its own, so peak memory follows the largest partition, not
the source. With one partition held in memory this is the whole-source path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from trainer import config as cfg
from trainer import contract, inputs, layout
from trainer.sources import ROW, IngestError

log = logging.getLogger(__name__)

_CATALOG_INPUT = (contract.PRODUCT_ID, contract.DESCRIPTION, contract.PRICE, contract.TIMESTAMP)


def partition_of(keys: pd.Series, partitions: int) -> np.ndarray:
    """Which partition each key falls in (a stable hash, the same on every run)."""
    return (pd.util.hash_array(keys.to_numpy()) % np.uint64(partitions)).astype(np.int64)


class Spill:
    """Rows spilled to Parquet files, one folder per partition of a key column."""

    def __init__(self, folder: str, key: str, partitions: int):
        self.folder, self.key, self.partitions = folder, key, partitions
        self._files = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Appends rows, each to its key's partition."""
        self._files += 1
        for part, rows in frame.groupby(partition_of(frame[self.key], self.partitions)):
            folder = os.path.join(self.folder, f"p{part:05d}")
            os.makedirs(folder, exist_ok=True)
            rows.to_parquet(os.path.join(folder, f"{self._files:08d}.parquet"), index=False)

    def _folders(self) -> list[str]:
        names = (os.path.join(self.folder, f"p{part:05d}") for part in range(self.partitions))
        return [f for f in names if os.path.isdir(f)]

    def __len__(self) -> int:
        """The number of non-empty partitions."""
        return len(self._folders())

    def __iter__(self):
        """Yields each non-empty partition as one frame."""
        for folder in self._folders():
            yield pd.read_parquet(folder)


def build_catalog(train: pd.DataFrame) -> pd.DataFrame:
    """One row per product seen in train: its latest description, median price, popularity."""
    train = train.sort_values([contract.TIMESTAMP, contract.BUYER_ID, ROW])
    grouped = train.groupby(contract.PRODUCT_ID, sort=True)
    return pd.DataFrame(
        {
            contract.DESCRIPTION: grouped[contract.DESCRIPTION].agg(_last_non_empty),
            contract.PRICE: grouped[contract.PRICE].median().astype("float32"),
            contract.TRAIN_COUNT: grouped.size().astype("int64"),
        }
    ).reset_index()


def _last_non_empty(values: pd.Series) -> str:
    values = values[values != ""]
    return values.iloc[-1] if len(values) else ""


def write_examples(writer: tf.io.TFRecordWriter, frame: pd.DataFrame) -> None:
    """Writes a frame's rows as tf.Examples with the raw feature spec (one value per feature).

    Encoded by tfx_bsl's Arrow encoder, column by column in C++: building a proto per row in
    Python was most of ingest's time.
    """
    from tfx_bsl.coders import example_coder

    columns = inputs.raw_arrays(frame)
    offsets = pa.array(np.arange(len(frame) + 1, dtype=np.int32))
    arrays, names = [], []
    for name, values in columns.items():
        kind = contract.RAW_COLUMN_TYPES[name]
        if kind == contract.STRING:
            flat = pa.array([v.encode("utf-8") for v in values], type=pa.binary())
        else:
            flat = pa.array(values)
        arrays.append(pa.ListArray.from_arrays(offsets, flat))
        names.append(name)
    batch = pa.RecordBatch.from_arrays(arrays, names)
    for record in example_coder.RecordBatchToExamplesEncoder().encode(batch):
        writer.write(record)


class SplitOutputs:
    """Writes the splits part by part and keeps what the checks and stats.json need."""

    def __init__(self, output_dir: str, rule: cfg.Split, catalog: Spill | None = None):
        self.output_dir, self.rule, self.catalog_spill = output_dir, rule, catalog
        self.rows = dict.fromkeys(contract.SPLITS, 0)
        self.buyers = dict.fromkeys(contract.SPLITS, 0)
        self.known_buyers = dict.fromkeys(contract.SPLITS, 0)
        self.products: dict[str, set] = {name: set() for name in contract.SPLITS}
        self.times: dict[str, list[int]] = {}
        self._train_rows: list[pd.DataFrame] = []
        self._files = {name: SplitFiles(output_dir, name) for name in contract.SPLITS}

    def add(self, parts: dict[str, pd.DataFrame]) -> None:
        """Writes one partition's splits (every row of its buyers) and counts them."""
        train_buyers = set(parts["train"][contract.BUYER_ID])
        for name, part in parts.items():
            if part.empty:
                continue
            buyers = part[contract.BUYER_ID].unique()
            self.rows[name] += len(part)
            self.buyers[name] += len(buyers)
            self.known_buyers[name] += sum(b in train_buyers for b in buyers)
            self.products[name].update(part[contract.PRODUCT_ID].unique())
            ts = part[contract.TIMESTAMP]
            low, high = self.times.get(name, (int(ts.min()), int(ts.max())))
            self.times[name] = [min(low, int(ts.min())), max(high, int(ts.max()))]
            self._write(name, part.drop(columns=[ROW]))
        train = parts["train"][[*_CATALOG_INPUT, contract.BUYER_ID, ROW]]
        if self.catalog_spill is not None:
            self.catalog_spill.add(train)
        else:
            self._train_rows.append(train)
        log.debug(
            "ingest: wrote %s rows (total %s)",
            {n: len(p) for n, p in parts.items()},
            self.rows,
        )

    def _write(self, name: str, part: pd.DataFrame) -> None:
        self._files[name].write(part)

    def close(self) -> None:
        """Flushes every writer; a split without rows gets no Parquet file."""
        for files in self._files.values():
            files.close()

    def counts(self) -> dict[str, SplitCounts]:
        """What each split holds so far, and how much of it train knows."""
        train_products = self.products["train"]
        return {
            name: SplitCounts(
                rows=self.rows[name],
                buyers=self.buyers[name],
                products=len(self.products[name]),
                known_buyers=self.known_buyers[name],
                known_products=len(self.products[name] & train_products),
            )
            for name in contract.SPLITS
        }

    def check(self, source: str) -> None:
        """Each split has rows, and buyers and products that train knows (``check_splits``)."""
        check_splits(source, self.rule, self.counts())

    def catalog(self) -> pd.DataFrame:
        """The catalog of every train row written (by product partition when spilled)."""
        if self.catalog_spill is None:
            return build_catalog(pd.concat(self._train_rows, ignore_index=True))
        parts = [build_catalog(p) for p in self.catalog_spill]
        return pd.concat(parts).sort_values(contract.PRODUCT_ID).reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class SplitCounts:
    """What a split holds after cleaning, and how much of it train knows."""

    rows: int = 0
    buyers: int = 0
    products: int = 0
    known_buyers: int = 0
    known_products: int = 0


def check_splits(source: str, rule: cfg.Split, counts: dict[str, SplitCounts]) -> None:
    """Each split has rows, and buyers and products that train knows.

    Raises:
        IngestError: naming the split, what it holds by the config, and the counts.
    """
    # buyer_holdout keeps eval and test buyers out of train by design (cold start).
    need_buyers = rule.strategy != "buyer_holdout"
    for name in contract.SPLITS:
        split = counts.get(name, SplitCounts())
        if split.rows and split.known_products and (split.known_buyers or not need_buyers):
            continue
        listed = ", ".join(
            f"{n}: {counts.get(n, SplitCounts()).rows} rows, "
            f"{counts.get(n, SplitCounts()).buyers} buyers, "
            f"{counts.get(n, SplitCounts()).products} products"
            for n in contract.SPLITS
        )
        problem = (
            "has no rows"
            if not split.rows
            else f"has no buyer or product seen in train ({split.known_buyers} known "
            f"buyers, {split.known_products} known products)"
        )
        raise IngestError(
            source,
            "dataset.split",
            f"the {name} split ({split_range(rule, name)}) {problem}; "
            f"counts after cleaning: {listed}",
        )


class SplitFiles:
    """One split's Parquet file and gzip'd TFRecords, written frame by frame."""

    def __init__(self, output_dir: str, name: str):
        self.output_dir, self.name = output_dir, name
        self._parquet: pq.ParquetWriter | None = None
        self._records = tf.io.TFRecordWriter(
            layout.split_path(output_dir, name, "tfrecord"), "GZIP"
        )

    def write(self, part: pd.DataFrame) -> None:
        """Appends rows (the split's columns, typed as the raw feature spec)."""
        table = pa.Table.from_pandas(part, preserve_index=False)
        if self._parquet is None:
            path = layout.split_path(self.output_dir, self.name)
            self._parquet = pq.ParquetWriter(path, table.schema)
        self._parquet.write_table(table.cast(self._parquet.schema))
        write_examples(self._records, part)

    def close(self) -> None:
        """Flushes both files; without rows no Parquet file is written."""
        if self._parquet is not None:
            self._parquet.close()
        self._records.close()


def split_range(rule: cfg.Split, name: str) -> str:
    """What a split holds, in the config's words (dates for strict_time, else a share)."""
    if rule.strategy == "strict_time":
        return {
            "train": f"before {rule.train_end}",
            "eval": f"from {rule.train_end} to before {rule.eval_end}",
            "test": f"from {rule.eval_end} on",
        }[name]
    share = {
        "train": 1 - rule.eval_fraction - rule.test_fraction,
        "eval": rule.eval_fraction,
        "test": rule.test_fraction,
    }[name]
    unit = "buyers" if rule.strategy == "buyer_holdout" else "rows"
    return f"a {share:.0%} share of the {unit} ({rule.strategy}, seed {rule.seed})"


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

    def fill(self, counts: dict, times: dict, catalog_size: int) -> None:
        """Per-split counts (``SplitCounts``), first and last times (epoch s), catalog size."""
        self.catalog_size = catalog_size
        for name in contract.SPLITS:
            self.rows[name] = counts[name].rows
            self.buyers[name] = counts[name].buyers
            self.products[name] = counts[name].products
            if name in times:
                first, last = pd.to_datetime(list(times[name]), unit="s")
                self.time_range[name] = [str(first), str(last)]


def no_rows_error(stats: IngestStats) -> IngestError:
    """The error when cleaning kept nothing."""
    return IngestError(
        stats.source,
        "dataset.cleaning",
        f"no usable rows after cleaning ({stats.rows_read} read, dropped: {stats.rows_dropped})",
    )


def write_schema(path: str) -> None:
    """Writes the raw schema as a TFMD Schema text proto."""
    from google.protobuf import text_format
    from tensorflow_transform.tf_metadata import schema_utils

    schema = schema_utils.schema_from_feature_spec(inputs.raw_feature_spec())
    with open(path, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(schema))


def log_summary(stats: IngestStats, where: str = "") -> None:
    """The one line ingest ends with: rows read, kept, dropped per reason, rows per split."""
    log.info(
        "ingest%s: read %d rows, kept %d, dropped %s; rows per split %s",
        where,
        stats.rows_read,
        stats.rows_kept,
        stats.rows_dropped,
        stats.rows,
    )


def write_tail(output_dir: str, catalog: pd.DataFrame, stats: IngestStats) -> None:
    """Writes what every ingest path ends with: the catalog, the schema, stats.json, a log line."""
    catalog.to_parquet(layout.catalog_path(output_dir), index=False)
    write_schema(layout.schema_path(output_dir))
    with open(layout.stats_path(output_dir), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(stats), f, indent=2)
    log_summary(stats, " (BigQuery)" if stats.source.startswith(cfg.BIGQUERY_PREFIX) else "")


def load_stats(folder: str) -> dict:
    """Reads stats.json of an ingest folder."""
    with open(layout.stats_path(folder), encoding="utf-8") as f:
        return json.load(f)
