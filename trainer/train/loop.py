"""Training: fit the two-tower model on transformed data, track it in MLflow, export it.

``run_training`` is the train step (the KFP component, ``python -m trainer`` and, through
``trainer/tfx_module.py``'s ``run_fn``, TFX's Trainer). It reads the ingest and transform
folders, fits the model keeping the epoch with the best validation recall, logs the MLflow
contract (params, tags, per-epoch and summary metrics, artifacts) and exports the serving
model. With ``training.calibrate_repurchase`` the selected model's repurchase part is then
scaled by the factor best on validation (trainer/train/calibration.py). With ``training.refit`` the
eval-selected model is exported to ``serving_selected/`` (the evaluate step logs its test
recall as ``selected_test_recall_at_<k>``), then a fresh model is trained on train + eval for
the best epoch count, its repurchase part scaled by the same factor, and exported as the
serving model: the exported, served and ``test_recall_at_<k>`` model is the refit one.
A non-finite loss or any other error ends the run FAILED with the reason and fails the step.

A killed or preempted training resumes: each epoch of the fit and of the refit is
checkpointed in the model folder (trainer/train/checkpoint.py); the same step again (a retry
with the same run key, or ``python -m trainer`` on the same work dir) first replays what the
killed process had logged (its tracking journal), takes its MLflow run over and continues at
the last whole epoch. The checkpoints are removed once the model is exported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import sys
import uuid

import numpy as np
import tensorflow_transform as tft
import tf_keras as keras

from trainer import config as cfg
from trainer import contract, features, inputs, layout, serving, sweep, tracking
from trainer.tracking import RunTracker
from trainer.train import calibration, callbacks, checkpoint
from trainer.train import model as model_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Resumable:
    """Where a training's checkpoints go and what they must match to be resumed."""

    model_dir: str
    identity: str
    run_key: str

    def folder(self, phase: str) -> str:
        """The checkpoint folder of a phase (``fit``, ``refit``)."""
        return layout.checkpoint_path(self.model_dir, phase)

    def load(self, phase: str) -> checkpoint.State | None:
        """The phase's checkpoint state, when it is this training's."""
        return checkpoint.load_state(self.folder(phase), self.identity)


@dataclasses.dataclass
class TrainResult:
    """What training produced."""

    run_id: str | None
    history: dict[str, list[float]]
    best_epoch: int
    serving_dir: str
    tracking_degraded: str | None = None


def with_seed(config: cfg.ExperimentConfig, seed: int | None) -> cfg.ExperimentConfig:
    """The config with ``training.seed`` replaced by ``seed`` (None or negative: kept)."""
    seed = config.resolve_seed(seed)
    if seed == config.training.seed:
        return config
    return dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed))


def build_model(
    fc: cfg.FeatureConfig,
    mc: cfg.ModelConfig,
    tft_output: tft.TFTransformOutput,
    data: inputs.TrainingData,
    training: cfg.Training,
    refit_epochs: int = 0,
) -> model_lib.TwoTowerModel:
    """The compiled two-tower model, with the products' in-batch sampling probabilities.

    With ``refit_epochs`` it is the refit's model: trained on train + eval for that many
    epochs, so the sampling frequencies and the schedule's steps count both splits.
    """
    product = next(f for f in fc.product if f.name == contract.PRODUCT_ID)
    counts = dict(
        zip(data.catalog[contract.PRODUCT_ID], data.catalog[contract.TRAIN_COUNT], strict=True)
    )
    steps, epochs = data.steps_per_epoch(training.batch_size), training.epochs
    if refit_epochs:
        counts = {p: n + data.eval_counts.get(p, 0) for p, n in counts.items()}
        steps = math.ceil((data.train_rows + data.eval_rows) / training.batch_size)
        epochs = refit_epochs
    probability = model_lib.sampling_probability(
        tft_output.vocabulary_by_name(features.vocabulary_name(product)),
        product.oov_buckets,
        counts,
    )
    two_tower = model_lib.TwoTowerModel(
        fc, mc, model_lib.cardinalities(fc, tft_output), sampling_probability=probability
    )
    optimizer = model_lib.make_optimizer(mc, steps, epochs)
    two_tower.compile(optimizer=optimizer)
    return two_tower


def run_name(fc: cfg.FeatureConfig, mc: cfg.ModelConfig) -> str:
    """A readable MLflow run name: the config pair and the start time (UTC)."""
    return f"{fc.id}-{mc.id}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"


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
    if config.training.exclude_seen:
        applicable = contract.applicable_baselines(exclude_seen=True)
        tags[contract.TAG_BASELINES_NOT_APPLICABLE] = ",".join(
            b for b in contract.BASELINES if b not in applicable
        )
    if mc.repurchase_scores and not fc.has_history:
        tags[contract.TAG_REPURCHASE_SCORES] = f"off: feature config {fc.id!r} has no history"
    if pipeline_job:
        tags[contract.TAG_PIPELINE_JOB] = sweep.job_name(pipeline_job)
    if pipeline_task:
        tags[contract.TAG_PIPELINE_TASK] = pipeline_task
    return tags


def resume_from(
    two_tower: model_lib.TwoTowerModel,
    resumable: Resumable | None,
    phase: str,
    build_ds,
    train_ds,
) -> tuple[checkpoint.State | None, list | None]:
    """The phase's checkpoint restored into the model (and the shuffles drawn), if any."""
    state = resumable.load(phase) if resumable else None
    if state is None:
        return None, None
    best_weights = checkpoint.restore(
        two_tower,
        resumable.folder(phase),
        state,
        build=lambda: two_tower.evaluate(build_ds.take(1), verbose=0),
    )
    checkpoint.skip_shuffles(train_ds, state.epochs_done)
    return state, best_weights


def fit(
    two_tower: model_lib.TwoTowerModel,
    tft_output: tft.TFTransformOutput,
    datasets: tuple,
    data: inputs.TrainingData,
    training: cfg.Training,
    tracker: RunTracker,
    resumable: Resumable | None = None,
) -> dict[str, list[float]]:
    """Fits the model; returns the per-epoch history with the best epoch's weights restored.

    With ``resumable`` each epoch is checkpointed, and a checkpoint of this training found
    there is resumed: the epochs it holds are not trained (nor logged) again.

    Raises:
        callbacks.NonFiniteLossError: the training loss became NaN or infinite.
    """
    steps_per_epoch = data.steps_per_epoch(training.batch_size)
    train_ds, eval_ds = datasets
    state, best_weights = resume_from(two_tower, resumable, "fit", eval_ds, train_ds)
    # Keeps the best epoch's weights (by validation recall) for export, and stops early when
    # a patience is configured.
    stopper = checkpoint.ResumableEarlyStopping(
        (state.stopper, best_weights) if state else None,
        monitor=contract.SELECTION_METRIC,
        mode="max",
        restore_best_weights=True,
        patience=training.early_stopping_patience or training.epochs,
    )
    done = state.epochs_done if state else 0
    if state and (state.stopped or done >= training.epochs):
        log.info("the checkpoint holds the whole fit (%d epoch(s)); not trained again", done)
        callbacks.log_checkpointed_epochs(tracker, state.history, state.timestamps)
        two_tower.set_weights(best_weights)
        return state.history
    saver = (
        checkpoint.EpochSaver(
            resumable.folder("fit"), resumable.identity, resumable.run_key, stopper, state
        )
        if resumable
        else None
    )
    tft_layer = tft_output.transform_features_layer()
    verbose, progress = callbacks.progress(steps_per_epoch, training.epochs, sys.stdout.isatty())
    result = two_tower.fit(
        train_ds,
        validation_data=eval_ds,
        epochs=training.epochs,
        initial_epoch=done,
        verbose=verbose,
        callbacks=[  # in this order: each reads what the ones before it added to the logs
            *progress,
            callbacks.ValidationRecall(
                two_tower,
                tft_layer,
                data.queries,
                data.catalog,
                data.eval_set,
                exclude_seen=training.exclude_seen,
            ),
            stopper,  # before the tracker: the epoch's checkpoint holds the stopper's state
            callbacks.EpochTracker(tracker, steps_per_epoch, training.epochs, saver=saver),
            callbacks.StopOnNonFiniteLoss(),
        ],
    )
    if saver:
        return saver.history
    return {k: [float(v) for v in vs] for k, vs in result.history.items()}


def refit(
    config: cfg.ExperimentConfig,
    pair: tuple[cfg.FeatureConfig, cfg.ModelConfig],
    tft_output: tft.TFTransformOutput,
    data: inputs.TrainingData,
    patterns: list[str],
    epochs: int,
    tracker: RunTracker,
    resumable: Resumable | None = None,
) -> model_lib.TwoTowerModel:
    """A fresh model trained on train + eval for ``epochs`` epochs (no validation left).

    The eval rows carry their own point-in-time buyer features from ingest (each row sees
    only earlier purchases), so they are training rows like any other. The catalog and the
    vocabularies stay those of train (the transform was analysed on train). Per-epoch
    ``refit_loss`` and ``refit_epoch_seconds`` go to the run. Checkpointed and resumed as the
    fit is (``resumable``).

    Raises:
        callbacks.NonFiniteLossError: the training loss became NaN or infinite.
    """
    training = config.training
    keras.utils.set_random_seed(training.seed)
    two_tower = build_model(*pair, tft_output, data, training, refit_epochs=epochs)
    dataset = inputs.make_dataset(
        patterns, tft_output, training.batch_size, shuffle_seed=training.seed
    )
    steps = math.ceil((data.train_rows + data.eval_rows) / training.batch_size)
    # The variables are built on a batch of the (unshuffled) eval rows, not the refit's data.
    build_ds = inputs.make_dataset(patterns[-1:], tft_output, training.batch_size)
    state, _ = resume_from(two_tower, resumable, "refit", build_ds, dataset)
    done = state.epochs_done if state else 0
    if done >= epochs:
        log.info("the checkpoint holds the whole refit (%d epoch(s)); not trained again", done)
        callbacks.log_checkpointed_epochs(
            tracker, state.history, state.timestamps, key=contract.refit_key
        )
        return two_tower
    log.info("refit on train + eval for %d epoch(s), %d steps each", epochs, steps)
    saver = (
        checkpoint.EpochSaver(
            resumable.folder("refit"), resumable.identity, resumable.run_key, resumed=state
        )
        if resumable
        else None
    )
    two_tower.fit(
        dataset,
        epochs=epochs,
        initial_epoch=done,
        verbose=2,
        callbacks=[
            callbacks.EpochTracker(tracker, steps, epochs, key=contract.refit_key, saver=saver),
            callbacks.StopOnNonFiniteLoss(),
        ],
    )
    return two_tower


def best_epoch(history: dict[str, list[float]]) -> int:
    """1-based epoch with the best validation recall@max(k) (lowest val_loss if none)."""
    values = history.get(contract.SELECTION_METRIC)
    if values and not all(math.isnan(v) for v in values):
        return int(np.nanargmax(values)) + 1
    values = history.get(contract.METRIC_VAL_LOSS) or history.get(contract.METRIC_LOSS)
    return int(np.nanargmin(values)) + 1


def log_summary(tracker: RunTracker, history: dict[str, list[float]]) -> int:
    """Logs the best epoch and each history metric's last and best-epoch value; returns best."""
    best = best_epoch(history)
    summary = {contract.BEST_EPOCH: best}
    for name in contract.history_metrics():
        values = history.get(name)
        if values:
            summary[contract.final_key(name)] = values[-1]
            summary[contract.best_key(name)] = values[best - 1]
    tracker.log_metrics(summary, step=len(history[contract.METRIC_LOSS]))
    return best


def write_config(config: cfg.ExperimentConfig, model_dir: str) -> str:
    """Writes the resolved config (the seed actually used included) into the model folder."""
    os.makedirs(model_dir, exist_ok=True)
    path = layout.config_path(model_dir)
    with open(path, "w", encoding="utf-8") as f:
        f.write(cfg.dump_config(config))
    return path


def end_run(tracker: RunTracker, model_dir: str, ids: dict, error: BaseException | None) -> None:
    """Ends the MLflow run with an honest status and writes the run info for later steps."""
    if error is None:
        tracker.finish(contract.STATUS_FINISHED)
    else:
        killed = isinstance(error, KeyboardInterrupt)
        reason = f"{type(error).__name__}: {error}"
        log.error("training failed: %s", reason)
        tracker.finish(contract.STATUS_KILLED if killed else contract.STATUS_FAILED, reason=reason)
    tracker.write_run_info(model_dir, **ids)


def train_and_export(
    config: cfg.ExperimentConfig,
    fc: cfg.FeatureConfig,
    mc: cfg.ModelConfig,
    folders: tuple[str, str, str],
    tracker: RunTracker,
    overrides: tuple = (None, None, None),
    resumable: Resumable | None = None,
) -> tuple[dict[str, list[float]], int, str]:
    """Reads the data, fits, logs the summary and exports; returns (history, best, serving dir).

    Args:
        config: The experiment config (seed already applied).
        fc: The feature config.
        mc: The model config.
        folders: (ingest, transform, model) folders.
        tracker: The run's tracker.
        overrides: (train file patterns, eval file patterns, serving dir), each None for the
            defaults.
        resumable: Where to checkpoint each epoch and resume from (None: no checkpoints).
    """
    ingest_dir, transform_dir, model_dir = folders
    train_files, eval_files, serving_dir = overrides
    tft_output = tft.TFTransformOutput(transform_dir)
    data = inputs.load_training_data(config, ingest_dir)
    datasets = inputs.make_datasets(config, tft_output, transform_dir, train_files, eval_files)
    two_tower = build_model(fc, mc, tft_output, data, config.training)
    history = fit(two_tower, tft_output, datasets, data, config.training, tracker, resumable)
    best = log_summary(tracker, history)
    exclude_seen = config.training.exclude_seen
    scale = None
    if config.training.calibrate_repurchase and not exclude_seen:  # the config refuses both
        scale = calibration.calibrate_repurchase(
            two_tower, tft_output.transform_features_layer(), data, tracker, model_dir
        )
    if config.training.refit:
        serving.export_serving_model(
            layout.selected_serving_path(model_dir),
            two_tower,
            tft_output,
            data.catalog,
            fc,
            exclude_seen,
        )
        patterns = [
            *(train_files or [layout.transformed_pattern(transform_dir, "train")]),
            *(eval_files or [layout.transformed_pattern(transform_dir, "eval")]),
        ]
        two_tower = refit(config, (fc, mc), tft_output, data, patterns, best, tracker, resumable)
        if scale is not None:
            two_tower.scale_repurchase(scale)
    serving_dir = serving.export_serving_model(
        serving_dir or layout.serving_path(model_dir),
        two_tower,
        tft_output,
        data.catalog,
        fc,
        exclude_seen,
    )
    tracker.log_artifact(serving_dir, "serving_model")
    return history, best, serving_dir


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
    seed: int | None = None,
    run_key: str = "",
    extra_tags: dict[str, str] | None = None,
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
        seed: Overrides ``config.training.seed`` (None or negative: the config's); the run's
            params log the seed used.
        run_key: Identifies the run across retries of the step (the tracker reuses the MLflow
            run tagged with it).
        extra_tags: More tags for the run (e.g. where the pipeline stored the model).

    Raises:
        callbacks.NonFiniteLossError: the loss became NaN or infinite (the run ends FAILED).
    """
    config = with_seed(config, seed)
    fc, mc = config.feature_config(feature_config_id), config.model_config(model_config_id)
    keras.utils.set_random_seed(config.training.seed)
    config_path = write_config(config, model_dir)
    # A killed earlier attempt on this folder: the same command (no key given) goes on with
    # its run; what it logged and MLflow never got goes out first.
    run_key = run_key or checkpoint.read_run_key(layout.checkpoint_path(model_dir, "fit"))
    run_key = run_key or uuid.uuid4().hex
    replay_killed_attempt(model_dir, tracking_uri)
    resumable = Resumable(
        model_dir,
        checkpoint.identity(
            run_key=run_key,
            config=cfg.dump_config(config),
            pair=f"{fc.id}/{mc.id}",
            inputs=repr((ingest_dir, transform_dir, train_files, eval_files)),
        ),
        run_key,
    )
    # The run exists before any data is read, so every failure after this is on record.
    tracker = RunTracker(tracking_uri, config.experiment, backlog_dir=model_dir)
    tags = {**run_tags(config, fc, mc, pipeline_job, pipeline_task), **(extra_tags or {})}
    tracker.start(run_name(fc, mc), cfg.run_params(config, fc, mc), tags, run_key=run_key)
    ids = {"feature_config_id": fc.id, "model_config_id": mc.id}
    try:
        tracker.log_artifact(config_path)
        history, best, serving_dir = train_and_export(
            config,
            fc,
            mc,
            (ingest_dir, transform_dir, model_dir),
            tracker,
            (train_files, eval_files, serving_dir),
            resumable,
        )
    except BaseException as err:  # every failure ends the run with its reason, then re-raises
        end_run(tracker, model_dir, ids, err)
        raise
    end_run(tracker, model_dir, ids, None)
    checkpoint.remove(os.path.join(model_dir, contract.CHECKPOINT_DIR))
    return TrainResult(tracker.run_id, history, best, serving_dir, tracker.degraded_reason)


def replay_killed_attempt(model_dir: str, tracking_uri: str) -> None:
    """Sends what an earlier, killed attempt on this folder logged (its journal), once.

    The run is left RUNNING for this attempt to take over. An outage is not fatal: the
    unsent lines stay in the journal for ``python -m trainer replay`` (or the evaluate step).
    """
    if not tracking_uri or not tracking.unsent_lines(model_dir):
        return
    try:
        result = tracking.replay(model_dir, tracking_uri, end_unfinished=False)
    except Exception as err:  # noqa: BLE001 - an outage must not stop the retry
        if not tracking.is_transient(err):
            raise
        log.error("the killed attempt's MLflow journal is still unsent (%s)", err)
        return
    log.info(
        "sent what the killed attempt had logged: %d metric point(s), %d operation(s)",
        result.points_sent,
        result.ops_sent,
    )
