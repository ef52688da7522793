"""Training: fit the two-tower model on transformed data, track it, export the serving model.

Callable three ways with the same code: ``run_training`` (the KFP component and
``python -m trainer``) and ``run_fn(fn_args)`` (TFX's Trainer module contract).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from trainer import buyer_features, contract, evaluation, features, ingest, transform
from trainer import config as cfg
from trainer import model as model_lib
from trainer.tracking import RunTracker

log = logging.getLogger(__name__)

SERVING_DIR = "serving"
CONFIG_FILE = "experiment.yaml"
SERVING_K = max(contract.RECALL_KS)


@dataclasses.dataclass
class TrainResult:
    """What training produced."""

    run_id: str | None
    history: dict[str, list[float]]
    best_epoch: int
    serving_dir: str
    tracking_degraded: str | None = None


def raw_inputs(frame: pd.DataFrame) -> dict[str, tf.Tensor]:
    """Raw feature tensors of a frame; columns it lacks are filled with neutral values."""
    n = len(frame)
    out = {}
    for name in ingest.STRING_COLUMNS:
        values = frame[name].astype(str).to_numpy() if name in frame else np.full(n, "")
        out[name] = tf.constant(values.astype(object), dtype=tf.string)
    for name in ingest.FLOAT_COLUMNS:
        values = frame[name].to_numpy(np.float32) if name in frame else np.zeros(n, np.float32)
        out[name] = tf.constant(values, dtype=tf.float32)
    for name in ingest.INT_COLUMNS:
        values = frame[name].to_numpy(np.int64) if name in frame else np.zeros(n, np.int64)
        out[name] = tf.constant(values, dtype=tf.int64)
    return out


def as_of_time(history: pd.DataFrame, split: pd.DataFrame) -> int:
    """When queries of an evaluated split are asked: its start, or just after the history."""
    after_history = int(history[cfg.TIMESTAMP].max()) + 1
    start = int(split[cfg.TIMESTAMP].min()) if len(split) else after_history
    return max(start, after_history)


def query_frame(
    history: pd.DataFrame,
    buyers: np.ndarray,
    as_of: int,
    max_history: int = buyer_features.DEFAULT_MAX_HISTORY,
) -> pd.DataFrame:
    """Raw buyer features of each query as of ``as_of``, from interactions before it only.

    Static columns (country, ...) come from the buyer's latest row; the point-in-time columns
    (history, recency / frequency / monetary) are computed as of ``as_of``.
    """
    latest = history.sort_values(cfg.TIMESTAMP, kind="stable").groupby(cfg.BUYER_ID).tail(1)
    frame = latest.set_index(cfg.BUYER_ID).loc[list(buyers)].reset_index()
    state = buyer_features.buyer_state_as_of(history, buyers, as_of, max_history)
    for name in buyer_features.COLUMNS:
        frame[name] = state[name].to_numpy()
    frame[cfg.TIMESTAMP] = np.int64(as_of)
    return frame


def embed_catalog(
    two_tower: model_lib.TwoTowerModel, tft_layer, catalog: pd.DataFrame, batch_size: int = 8192
) -> tuple[tf.Tensor, tf.Tensor]:
    """Product-tower embeddings of the catalog and its product ids (in the vocabulary's space)."""
    embeddings, ids = [], []
    for start in range(0, len(catalog), batch_size):
        transformed = tft_layer(raw_inputs(catalog.iloc[start : start + batch_size]))
        embeddings.append(two_tower.product_tower(transformed, training=False))
        ids.append(transformed[model_lib.PRODUCT_KEY])
    return tf.concat(embeddings, 0), tf.concat(ids, 0)


def top_k_for_queries(
    two_tower: model_lib.TwoTowerModel,
    tft_layer,
    queries: pd.DataFrame,
    candidates: tf.Tensor,
    candidate_ids: tf.Tensor,
    k: int,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k catalog rows (and scores) of raw query rows, best first."""
    k = min(k, int(candidates.shape[0]))
    rows, values = [], []
    for start in range(0, len(queries), batch_size):
        transformed = tft_layer(raw_inputs(queries.iloc[start : start + batch_size]))
        scores = two_tower.scores(transformed, candidates, candidate_ids).numpy()
        top, top_scores = evaluation.top_k_rows(scores, k)
        rows.append(top)
        values.append(top_scores)
    return np.concatenate(rows), np.concatenate(values)


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


class ValidationRecall(keras.callbacks.Callback):
    """Exact validation recall@k over the full catalog at the end of each epoch."""

    def __init__(
        self,
        model: model_lib.TwoTowerModel,
        tft_layer,
        queries: pd.DataFrame,
        catalog: pd.DataFrame,
        eval_set: evaluation.EvalSet,
    ):
        super().__init__()
        self.two_tower, self.tft_layer = model, tft_layer
        self.queries, self.catalog, self.eval_set = queries, catalog, eval_set

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.eval_set.num_pairs == 0:
            return
        candidates, ids = embed_catalog(self.two_tower, self.tft_layer, self.catalog)
        top, _ = top_k_for_queries(
            self.two_tower, self.tft_layer, self.queries, candidates, ids, max(contract.RECALL_KS)
        )
        for k, value in evaluation.recall_at_k(top, self.eval_set).items():
            logs[contract.val_recall_key(k)] = value


class TrackEpochs(keras.callbacks.Callback):
    """Queues every epoch's history metrics for MLflow (step = epoch, 1-based)."""

    def __init__(self, tracker: RunTracker):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        names = contract.history_metrics()
        self.tracker.log_metrics(
            {k: v for k, v in (logs or {}).items() if k in names}, step=epoch + 1
        )


class ServingModel(tf.Module):
    """Raw buyer features in, top-K product ids and scores out (exact search over the catalog)."""

    def __init__(
        self,
        tft_layer,
        two_tower: model_lib.TwoTowerModel,
        product_ids: np.ndarray,
        product_embeddings: tf.Tensor,
        product_vocab_ids: tf.Tensor,
        buyer_columns: list[str],
        k: int = SERVING_K,
    ):
        super().__init__()
        self.tft_layer = tft_layer
        self.two_tower = two_tower
        self.product_ids = tf.constant(product_ids.astype(object), dtype=tf.string)
        self.product_embeddings = tf.Variable(product_embeddings, trainable=False)
        self.product_vocab_ids = tf.Variable(product_vocab_ids, trainable=False)
        self.k = min(k, len(product_ids))
        specs = raw_specs()
        self.buyer_columns = buyer_columns
        self.serve = tf.function(
            self._serve, input_signature=[{c: specs[c] for c in buyer_columns}]
        )

    def _serve(self, features: dict) -> dict:
        batch = tf.shape(next(iter(features.values())))[0]
        raw = {}
        for name, spec in raw_specs().items():
            raw[name] = (
                features[name]
                if name in features
                else tf.fill([batch], tf.constant("" if spec.dtype == tf.string else 0, spec.dtype))
            )
        scores = self.two_tower.scores(
            self.tft_layer(raw), self.product_embeddings, self.product_vocab_ids
        )
        top = tf.math.top_k(scores, k=self.k)
        return {"product_ids": tf.gather(self.product_ids, top.indices), "scores": top.values}


def raw_specs() -> dict[str, tf.TensorSpec]:
    """Input spec of each raw column as the serving signature takes it (a batch vector)."""
    specs = {n: tf.TensorSpec([None], tf.string, name=n) for n in ingest.STRING_COLUMNS}
    specs.update({n: tf.TensorSpec([None], tf.float32, name=n) for n in ingest.FLOAT_COLUMNS})
    specs.update({n: tf.TensorSpec([None], tf.int64, name=n) for n in ingest.INT_COLUMNS})
    return specs


def export_serving_model(
    path: str,
    model: model_lib.TwoTowerModel,
    tft_output,
    catalog,
    feature_config: cfg.FeatureConfig,
) -> str:
    """Saves the serving SavedModel (signature ``serving_default``)."""
    tft_layer = tft_output.transform_features_layer()
    embeddings, vocab_ids = embed_catalog(model, tft_layer, catalog)
    module = ServingModel(
        tft_layer,
        model,
        catalog[cfg.PRODUCT_ID].to_numpy(),
        embeddings,
        vocab_ids,
        serving_columns(feature_config),
    )
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def serving_columns(feature_config: cfg.FeatureConfig) -> list[str]:
    """Raw columns the serving signature takes: every column the buyer tower reads."""
    names = {f.name for f in feature_config.buyer}
    names |= {f.cross_with for f in feature_config.buyer if f.cross_with}
    return sorted(names)


def best_epoch(history: dict[str, list[float]]) -> int:
    """1-based epoch with the best validation recall@max(k) (lowest val_loss if none)."""
    key = contract.val_recall_key(max(contract.RECALL_KS))
    values = history.get(key)
    if values and not all(math.isnan(v) for v in values):
        return int(np.nanargmax(values)) + 1
    values = history.get(contract.METRIC_VAL_LOSS) or history.get(contract.METRIC_LOSS)
    return int(np.nanargmin(values)) + 1


def run_params(config: cfg.ExperimentConfig, fc: cfg.FeatureConfig, mc: cfg.ModelConfig) -> dict:
    """The contract params plus the flattened resolved config."""
    params = cfg.run_params(config, fc.id, mc.id)
    params.update(
        {
            contract.PARAM_EPOCHS: config.training.epochs,
            contract.PARAM_BATCH_SIZE: config.training.batch_size,
            contract.PARAM_LEARNING_RATE: mc.learning_rate,
            contract.PARAM_OPTIMIZER: mc.optimizer,
            contract.PARAM_EMBEDDING_DIM: mc.embedding_dim,
            contract.PARAM_FEATURE_CONFIG_ID: fc.id,
            contract.PARAM_MODEL_CONFIG_ID: mc.id,
            contract.PARAM_DATASET_ID: config.dataset.name,
            contract.PARAM_SEED: config.training.seed,
        }
    )
    return params


def run_tags(
    config: cfg.ExperimentConfig,
    fc: cfg.FeatureConfig,
    mc: cfg.ModelConfig,
    pipeline_job: str = "",
    pipeline_task: str = "",
) -> dict[str, str]:
    """The contract tags of a run."""
    tags = {
        contract.TAG_FEATURE_CONFIG_NAME: fc.name,
        contract.TAG_MODEL_CONFIG_NAME: mc.name,
        contract.TAG_DATASET_NAME: config.dataset.name,
        contract.TAG_MODEL_TYPE: contract.MODEL_TYPE_TWO_TOWER,
    }
    if pipeline_job:
        tags[contract.TAG_PIPELINE_JOB] = pipeline_job
    if pipeline_task:
        tags[contract.TAG_PIPELINE_TASK] = pipeline_task
    return tags


def run_training(
    config: cfg.ExperimentConfig,
    ingest_dir: str,
    transform_dir: str,
    model_dir: str,
    tracking_uri: str = "",
    feature_config_id: str = "",
    model_config_id: str = "",
    pipeline_job: str = "",
    pipeline_task: str = "",
    train_files: list[str] | None = None,
    eval_files: list[str] | None = None,
    serving_dir: str | None = None,
) -> TrainResult:
    """Trains one (feature config, model config) pair and exports its serving model.

    Args:
        config: The validated experiment config.
        ingest_dir: Ingest output folder (raw splits, catalog).
        transform_dir: Transform output folder (transform graph, transformed examples).
        model_dir: Folder to write the serving model, resolved config and run info to.
        tracking_uri: MLflow tracking URI; empty disables tracking.
        feature_config_id: Which feature config (first when empty).
        model_config_id: Which model config (first when empty).
        pipeline_job: KFP pipeline job name, tagged on the run.
        pipeline_task: KFP task name, tagged on the run.
        train_files: Transformed train example patterns (default: the transform output's).
        eval_files: Transformed eval example patterns (default: the transform output's).
        serving_dir: Where to export the serving model (default: ``model_dir/serving``).
    """
    fc, mc = config.feature_config(feature_config_id), config.model_config(model_config_id)
    training = config.training
    keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    tft_layer = tft_output.transform_features_layer()

    train_frame = pd.read_parquet(ingest.split_path(ingest_dir, "train"))
    eval_frame = pd.read_parquet(ingest.split_path(ingest_dir, "eval"))
    catalog = pd.read_parquet(os.path.join(ingest_dir, ingest.CATALOG_FILE))
    eval_set = evaluation.build_eval_set(eval_frame, train_frame, catalog)
    queries = query_frame(
        train_frame,
        eval_set.buyers,
        as_of_time(train_frame, eval_frame),
        config.history_length or buyer_features.DEFAULT_MAX_HISTORY,
    )

    train_ds = make_dataset(
        train_files or transform.transformed_pattern(transform_dir, "train"),
        tft_output,
        training.batch_size,
        shuffle_seed=training.seed,
    )
    eval_ds = make_dataset(
        eval_files or transform.transformed_pattern(transform_dir, "eval"),
        tft_output,
        training.eval_batch_size,
    )
    product = next(f for f in fc.product if f.name == cfg.PRODUCT_ID)
    probability = model_lib.sampling_probability(
        tft_output.vocabulary_by_name(features.vocabulary_name(product)),
        product.oov_buckets,
        dict(zip(catalog[cfg.PRODUCT_ID], catalog["train_count"], strict=True)),
    )
    two_tower = model_lib.TwoTowerModel(
        fc, mc, model_lib.cardinalities(fc, tft_output), sampling_probability=probability
    )
    steps_per_epoch = math.ceil(len(train_frame) / training.batch_size)
    two_tower.compile(optimizer=model_lib.make_optimizer(mc, steps_per_epoch, training.epochs))
    # Keeps the best epoch's weights (by validation recall) for export, and stops early when
    # a patience is configured.
    monitor = contract.val_recall_key(max(contract.RECALL_KS))
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode="max",
        restore_best_weights=True,
        patience=training.early_stopping_patience or training.epochs,
    )

    os.makedirs(model_dir, exist_ok=True)
    tracker = RunTracker(tracking_uri, config.experiment, backlog_dir=model_dir)
    run_name = f"{fc.id}-{mc.id}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    tracker.start(
        run_name, run_params(config, fc, mc), run_tags(config, fc, mc, pipeline_job, pipeline_task)
    )
    status = "FAILED"
    try:
        fit = two_tower.fit(
            train_ds,
            validation_data=eval_ds,
            epochs=training.epochs,
            verbose=2,
            callbacks=[
                ValidationRecall(two_tower, tft_layer, queries, catalog, eval_set),
                TrackEpochs(tracker),
                stopper,
            ],
        )
        history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
        best = best_epoch(history)
        summary = {contract.BEST_EPOCH: best}
        for name in contract.history_metrics():
            values = history.get(name)
            if not values:
                continue
            summary[contract.final_key(name)] = values[-1]
            summary[contract.best_key(name)] = values[best - 1]
        tracker.log_metrics(summary, step=len(history[contract.METRIC_LOSS]))

        serving_dir = export_serving_model(
            serving_dir or os.path.join(model_dir, SERVING_DIR), two_tower, tft_output, catalog, fc
        )
        config_path = os.path.join(model_dir, CONFIG_FILE)
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(cfg.dump_config(config))
        tracker.log_artifact(config_path)
        tracker.log_artifact(serving_dir, "serving_model")
        status = "FINISHED"
    finally:
        tracker.finish(status)
        tracker.write_run_info(model_dir, feature_config_id=fc.id, model_config_id=mc.id)
    return TrainResult(
        run_id=tracker.run_id,
        history=history,
        best_epoch=best,
        serving_dir=serving_dir,
        tracking_degraded=tracker.degraded_reason,
    )
