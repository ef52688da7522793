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
import logging
import math
import os
import sys

import tensorflow_transform as tft
import tf_keras as keras

from trainer import config as cfg
from trainer import contract, features, inputs, layout, serving
from trainer.tracking import RunTracker
from trainer.train import calibration, callbacks, checkpoint, record, resume
from trainer.train import model as model_lib

log = logging.getLogger(__name__)


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


def fit(
    two_tower: model_lib.TwoTowerModel,
    tft_output: tft.TFTransformOutput,
    datasets: tuple,
    data: inputs.TrainingData,
    training: cfg.Training,
    tracker: RunTracker,
    resumable: resume.Resumable | None = None,
    until_epoch: int = 0,
) -> dict[str, list[float]]:
    """Fits the model; returns the per-epoch history with the best epoch's weights restored.

    With ``resumable`` each epoch is checkpointed, and a checkpoint of this training found
    there is resumed: the epochs it holds are not trained (nor logged) again. With
    ``until_epoch`` (a halving rung's budget) it stops after that epoch; the learning-rate
    schedule and early stopping still count ``training.epochs``, so a trial trained rung by
    rung follows the same course as one trained at once.

    Raises:
        callbacks.NonFiniteLossError: the training loss became NaN or infinite.
    """
    steps_per_epoch = data.steps_per_epoch(training.batch_size)
    train_ds, eval_ds = datasets
    state, best_weights = resume.resume_from(two_tower, resumable, "fit", eval_ds, train_ds)
    # Keeps the best epoch's weights (by validation recall) for export, and stops early when
    # a patience is configured.
    stopper = checkpoint.ResumableEarlyStopping(
        (state.stopper, best_weights) if state else None,
        monitor=contract.SELECTION_METRIC,
        mode="max",
        restore_best_weights=True,
        patience=training.early_stopping_patience or training.epochs,
    )
    epochs = until_epoch or training.epochs
    if resume.whole(state, epochs, tracker):
        two_tower.set_weights(best_weights)
        return state.history
    saver = resume.saver(resumable, "fit", state, stopper)
    tft_layer = tft_output.transform_features_layer()
    verbose, progress = callbacks.progress(steps_per_epoch, epochs, sys.stdout.isatty())
    result = two_tower.fit(
        train_ds,
        validation_data=eval_ds,
        epochs=epochs,
        initial_epoch=state.epochs_done if state else 0,
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
    resumable: resume.Resumable | None = None,
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
    state, _ = resume.resume_from(two_tower, resumable, "refit", build_ds, dataset)
    if resume.whole(state, epochs, tracker, key=contract.refit_key):
        return two_tower
    log.info("refit on train + eval for %d epoch(s), %d steps each", epochs, steps)
    saver = resume.saver(resumable, "refit", state)
    done = state.epochs_done if state else 0
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


def write_config(config: cfg.ExperimentConfig, model_dir: str) -> str:
    """Writes the resolved config (the seed actually used included) into the model folder."""
    os.makedirs(model_dir, exist_ok=True)
    path = layout.config_path(model_dir)
    with open(path, "w", encoding="utf-8") as f:
        f.write(cfg.dump_config(config))
    return path


def end_run(
    tracker: RunTracker,
    model_dir: str,
    ids: dict,
    error: BaseException | None,
    keep_checkpoint: bool = False,
) -> None:
    """Ends the MLflow run with an honest status and writes the run info for later steps.

    A finished training's checkpoints are removed (the exported model is what is kept),
    unless ``keep_checkpoint`` (a halving rung's: the next rung goes on from it); a failed
    one's stay for the next attempt to resume.
    """
    if error is None:
        tracker.finish(contract.STATUS_FINISHED)
        if not keep_checkpoint:
            checkpoint.remove(os.path.join(model_dir, contract.CHECKPOINT_DIR))
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
    resumable: resume.Resumable | None = None,
    until_epoch: int = 0,
) -> tuple[dict[str, list[float]], int, str]:
    """Reads the data, fits, logs the summary and exports; returns (history, best, serving dir).

    With ``until_epoch`` (a halving rung before the last) it only fits, up to that epoch: no
    summary, calibration, refit or export (the serving dir returned is "").

    Args:
        config: The experiment config (seed already applied).
        fc: The feature config.
        mc: The model config.
        folders: (ingest, transform, model) folders.
        tracker: The run's tracker.
        overrides: (train file patterns, eval file patterns, serving dir), each None for the
            defaults.
        resumable: Where to checkpoint each epoch and resume from (None: no checkpoints).
        until_epoch: Stop after this epoch, before the summary (0: train to the end).
    """
    ingest_dir, transform_dir, model_dir = folders
    train_files, eval_files, serving_dir = overrides
    tft_output = tft.TFTransformOutput(transform_dir)
    data = inputs.load_training_data(config, ingest_dir)
    datasets = inputs.make_datasets(config, tft_output, transform_dir, train_files, eval_files)
    two_tower = build_model(fc, mc, tft_output, data, config.training)
    history = fit(
        two_tower, tft_output, datasets, data, config.training, tracker, resumable, until_epoch
    )
    if until_epoch:
        return history, record.best_epoch(history), ""
    best = record.log_summary(tracker, history)
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
    mlflow_dir = serving.save_mlflow_model(
        serving_dir, layout.mlflow_model_path(model_dir), data.queries
    )
    tracker.log_artifact(mlflow_dir, contract.MLFLOW_MODEL_ARTIFACT)
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
    halving_rung: int = 0,
    resume_from: str = "",
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
        halving_rung: The halving rung (1-based, of ``config.rungs``; 0: none): one before
            the last fits up to its epochs only, keeping the checkpoint; tags the rung.
        resume_from: The previous rung's model folder, whose checkpoint is continued.

    Raises:
        callbacks.NonFiniteLossError: the loss became NaN or infinite (the run ends FAILED).
    """
    config = with_seed(config, seed)
    fc, mc = config.feature_config(feature_config_id), config.model_config(model_config_id)
    keras.utils.set_random_seed(config.training.seed)
    config_path = write_config(config, model_dir)
    # A killed attempt on this folder: what it logged goes out, then its run and checkpoint.
    inputs_ = (ingest_dir, transform_dir, train_files, eval_files)
    resumable = resume.Resumable.of(config, (fc, mc), model_dir, inputs_, run_key, resume_from)
    resume.replay_killed_attempt(model_dir, tracking_uri)
    # The run exists before any data is read, so every failure after this is on record.
    tracker = RunTracker(tracking_uri, config.experiment, backlog_dir=model_dir)
    tags = {**record.run_tags(config, fc, mc, pipeline_job, pipeline_task), **(extra_tags or {})}
    params = cfg.run_params(config, fc, mc)
    tracker.start(record.run_name(fc, mc), params, tags, run_key=resumable.run_key)
    ids = {"feature_config_id": fc.id, "model_config_id": mc.id}
    until = record.rung_until(config, halving_rung)
    try:
        tracker.log_artifact(config_path)
        folders = (ingest_dir, transform_dir, model_dir)
        overrides = (train_files, eval_files, serving_dir)
        history, best, serving_dir = train_and_export(
            config, fc, mc, folders, tracker, overrides, resumable, until
        )
        if halving_rung:
            tracker.set_tags(record.rung_tags(history, halving_rung, len(config.rungs)))
    except BaseException as err:  # every failure ends the run with its reason, then re-raises
        end_run(tracker, model_dir, ids, err)
        raise
    end_run(tracker, model_dir, ids, None, keep_checkpoint=bool(until))
    return TrainResult(tracker.run_id, history, best, serving_dir, tracker.degraded_reason)
