"""Data input: raw columns as typed arrays, tensors and specs; training's frames and datasets.

Every raw column's type comes from ``contract.RAW_COLUMN_TYPES``; this module is the one
place that turns those types into NumPy dtypes, TensorFlow dtypes, neutral fill values,
``tf.io`` parsing specs (ingest's tf.Examples) and ``tf.TensorSpec``s (the serving
signature), so the string / float / int columns are listed nowhere else. It also reads what
training needs from the ingest and transform folders: the catalog, the validation queries
and the tf.data datasets of transformed examples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_transform as tft

from trainer import config as cfg
from trainer import contract, layout, retrieval
from trainer.inputs import buyer_features

_NUMPY_DTYPES = {contract.STRING: object, contract.FLOAT: np.float32, contract.INT: np.int64}
_TF_DTYPES = {contract.STRING: tf.string, contract.FLOAT: tf.float32, contract.INT: tf.int64}
# What a column a frame or request lacks is filled with.
NEUTRAL_VALUES = {contract.STRING: "", contract.FLOAT: 0.0, contract.INT: 0}


def _columns(columns: Iterable[str] | None) -> list[str]:
    return list(contract.RAW_COLUMN_TYPES if columns is None else columns)


def raw_dtype(column: str) -> tf.DType:
    """TensorFlow dtype of a raw column."""
    return _TF_DTYPES[contract.RAW_COLUMN_TYPES[column]]


def raw_arrays(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Typed NumPy columns of a frame (every raw column by default).

    Strings become an object array of ``str``; a column the frame lacks is filled with its
    type's neutral value.
    """
    out = {}
    for name in _columns(columns):
        kind = contract.RAW_COLUMN_TYPES[name]
        if name not in frame:
            out[name] = np.full(len(frame), NEUTRAL_VALUES[kind], dtype=_NUMPY_DTYPES[kind])
        elif kind == contract.STRING:
            out[name] = frame[name].astype(str).to_numpy().astype(object)
        else:
            out[name] = frame[name].to_numpy(_NUMPY_DTYPES[kind])
    return out


def raw_tensors(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> dict[str, tf.Tensor]:
    """Raw feature tensors of a frame, as the transform graph takes them (see ``raw_arrays``)."""
    return {
        name: tf.constant(values, dtype=raw_dtype(name))
        for name, values in raw_arrays(frame, columns).items()
    }


def raw_specs(columns: Iterable[str] | None = None) -> dict[str, tf.TensorSpec]:
    """Input spec of each raw column as the serving signature takes it (a batch vector)."""
    return {name: tf.TensorSpec([None], raw_dtype(name), name=name) for name in _columns(columns)}


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io`` parsing spec of the raw tf.Examples that ingest writes."""
    return {name: tf.io.FixedLenFeature([], raw_dtype(name)) for name in contract.RAW_COLUMN_TYPES}


def make_dataset(
    patterns: str | list[str],
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of transformed examples; shuffled (deterministically) when a seed is given."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    spec = tft_output.transformed_feature_spec()
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    ds = ds.batch(batch_size).map(
        lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE
    )
    if shuffle_seed is None:
        return ds.cache().prefetch(tf.data.AUTOTUNE)
    # Training: hold the parsed columns in memory and shuffle row indices each epoch (a full
    # shuffle, and far cheaper than unbatch/shuffle/re-batch of the rows themselves).
    columns = {key: [] for key in spec}
    for batch in ds:
        for key, value in batch.items():
            columns[key].append(value)
    columns = {key: tf.concat(parts, 0) for key, parts in columns.items()}
    rows = int(next(iter(columns.values())).shape[0])
    ds = tf.data.Dataset.range(rows).shuffle(rows, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda i: {key: tf.gather(value, i) for key, value in columns.items()},
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class TrainingData:
    """What training reads from the ingest folder besides the transformed examples."""

    train_rows: int
    catalog: pd.DataFrame
    eval_set: retrieval.EvalSet  # the validation pairs
    queries: pd.DataFrame  # raw buyer features of each validation query
    # Interactions per product in the eval split: with the train counts, the refit's
    # in-batch sampling frequencies.
    eval_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    eval_rows: int = 0

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training steps in one pass over the train split."""
        return math.ceil(self.train_rows / batch_size)


def load_training_data(config: cfg.ExperimentConfig, ingest_dir: str) -> TrainingData:
    """Catalog, validation pairs and their point-in-time queries from the ingest folder."""
    train_frame = pd.read_parquet(layout.split_path(ingest_dir, "train"))
    eval_frame = pd.read_parquet(layout.split_path(ingest_dir, "eval"))
    catalog = pd.read_parquet(layout.catalog_path(ingest_dir))
    eval_set, queries = validation_queries(config, train_frame, eval_frame, catalog)
    counts = eval_frame[contract.PRODUCT_ID].value_counts()
    return TrainingData(
        len(train_frame), catalog, eval_set, queries, counts.to_dict(), len(eval_frame)
    )


def validation_queries(
    config: cfg.ExperimentConfig,
    train_frame: pd.DataFrame,
    eval_frame: pd.DataFrame,
    catalog: pd.DataFrame,
) -> tuple[retrieval.EvalSet, pd.DataFrame]:
    """The validation pairs and each validation buyer's raw features as of the eval split's start.

    What training validates every epoch on and the evaluate step scores the model chosen on
    validation with: buyer features from train rows only.
    """
    exclude_seen = config.training.exclude_seen
    eval_set = retrieval.build_eval_set(
        eval_frame, train_frame, catalog, seen=train_frame if exclude_seen else None
    )
    queries = buyer_features.query_frame(
        train_frame,
        eval_set.buyers,
        buyer_features.as_of_time(train_frame, eval_frame),
        query_history_length(config, train_frame),
    )
    return eval_set, queries


def query_history_length(config: cfg.ExperimentConfig, history: pd.DataFrame) -> int:
    """Products kept in a query's history column: all of them with ``training.exclude_seen``.

    The towers read the first ``max_length`` (most bought first) either way; excluding the
    buyer's earlier items needs every one of them.
    """
    if config.training.exclude_seen:
        return max(config.history_length, history[contract.PRODUCT_ID].nunique())
    return config.history_length


def make_datasets(
    config: cfg.ExperimentConfig,
    tft_output: tft.TFTransformOutput,
    transform_dir: str,
    train_files: list[str] | None = None,
    eval_files: list[str] | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, eval) datasets of transformed examples; train is shuffled by the seed."""
    training = config.training
    train_ds = make_dataset(
        train_files or layout.transformed_pattern(transform_dir, "train"),
        tft_output,
        training.batch_size,
        shuffle_seed=training.seed,
    )
    eval_ds = make_dataset(
        eval_files or layout.transformed_pattern(transform_dir, "eval"),
        tft_output,
        training.eval_batch_size,
    )
    return train_ds, eval_ds
