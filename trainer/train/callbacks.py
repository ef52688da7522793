"""Keras callbacks of the training loop: validation recall, epoch tracking, the loss guard."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import pandas as pd
import tf_keras as keras

from trainer import contract, retrieval, serving
from trainer.tracking import RunTracker
from trainer.train import checkpoint
from trainer.train.model import TwoTowerModel

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot recover from it."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(f"training loss is {loss} at epoch {epoch}")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises ``NonFiniteLossError`` after the first epoch whose training loss is not finite.

    Keras' own ``TerminateOnNaN`` only stops the loop, which would end the run as if it had
    finished; raising makes the step fail and lets the caller record why and when. The check
    runs per epoch, not per batch: the epoch's loss is the mean over its batches, so one
    non-finite batch makes it non-finite too, and a per-batch hook would make Keras copy the
    loss to the host after every step.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Stops training (raises) when the epoch's loss is NaN or infinite."""
        loss = (logs or {}).get(contract.METRIC_LOSS)
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(epoch + 1, float(loss))


def validation_recalls(
    two_tower: TwoTowerModel,
    tft_layer,
    queries: pd.DataFrame,
    catalog: pd.DataFrame,
    eval_set: retrieval.EvalSet,
    seen_index: dict[str, int] | None = None,
    embedded: tuple | None = None,
) -> dict[int, float]:
    """Exact recall@k of the model's top-k over the whole catalog for the validation queries.

    Args:
        two_tower: The model, as it stands.
        tft_layer: The transform graph's layer.
        queries: Raw buyer features of each validation query (as of the split's start).
        catalog: The retrieval catalog.
        eval_set: The validation pairs.
        seen_index: With ``exclude_seen``: catalog row per product id (each query's history
            products are left out of its top-k, as the serving signature does).
        embedded: ``serving.embed_catalog``'s (embeddings, ids) when the product tower has not
            changed since (computed here otherwise).
    """
    candidates, ids = embedded or serving.embed_catalog(two_tower, tft_layer, catalog)
    top, _ = serving.top_k_for_queries(
        two_tower,
        tft_layer,
        queries,
        candidates,
        ids,
        max(contract.RECALL_KS),
        seen_index=seen_index,
    )
    return retrieval.recall_at_k(top, eval_set)


class ValidationRecall(keras.callbacks.Callback):
    """Exact validation recall@k over the full catalog at the end of each epoch.

    With ``exclude_seen`` each query's history products are left out of its top-k, as the
    serving signature does.
    """

    def __init__(
        self,
        model: TwoTowerModel,
        tft_layer,
        queries: pd.DataFrame,
        catalog: pd.DataFrame,
        eval_set: retrieval.EvalSet,
        exclude_seen: bool = False,
    ):
        super().__init__()
        self.two_tower, self.tft_layer = model, tft_layer
        self.queries, self.catalog, self.eval_set = queries, catalog, eval_set
        self.seen_index = retrieval.catalog_index(catalog) if exclude_seen else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Adds exact validation recall@k over the whole catalog to the epoch's logs."""
        if logs is None or self.eval_set.num_pairs == 0:
            return
        recalls = validation_recalls(
            self.two_tower,
            self.tft_layer,
            self.queries,
            self.catalog,
            self.eval_set,
            self.seen_index,
        )
        for k, value in recalls.items():
            logs[contract.val_recall_key(k)] = value


EPOCH_METRICS = frozenset({*contract.history_metrics(), contract.METRIC_EPOCH_SECONDS})


def log_checkpointed_epochs(
    tracker: RunTracker,
    history: dict[str, list[float]],
    timestamps: list[int],
    key: Callable[[str], str] = str,
) -> None:
    """Logs a checkpoint's epochs again with their first step and time.

    A resumed training takes its run over, and a taken-over run is sent to carefully (points
    it holds at that step and time are skipped): what the killed attempt logged stays once,
    and an epoch checkpointed but killed before its points were logged is logged now.
    """
    for epoch, timestamp in enumerate(timestamps):
        points = {
            key(k): values[epoch]
            for k, values in history.items()
            if k in EPOCH_METRICS and epoch < len(values)
        }
        tracker.log_metrics(points, step=epoch + 1, timestamp_ms=timestamp)


class EpochTracker(keras.callbacks.Callback):
    """Times each epoch, logs a line for it and queues its metrics for MLflow (step = epoch).

    ``epoch_seconds`` is the whole epoch (training, validation loss and validation recall);
    the steps/s in the log line count the training part only. Put it after the callbacks
    that add metrics to the epoch's logs and after the early stopping (and before the loss
    guard, so a failed epoch's metrics are logged too). ``key`` names the metrics in MLflow
    (the refit logs ``contract.refit_key`` names, so its epochs do not overwrite the first
    fit's). With a ``saver`` each epoch with a finite loss is checkpointed before its metrics
    are logged, and a resumed training's checkpointed epochs are logged again at its start
    with their first step and time (a taken-over run skips the points it holds).
    """

    def __init__(
        self,
        tracker: RunTracker,
        steps_per_epoch: int,
        epochs: int,
        key: Callable[[str], str] = str,
        saver: checkpoint.EpochSaver | None = None,
    ):
        super().__init__()
        self.tracker, self.steps_per_epoch, self.epochs = tracker, steps_per_epoch, epochs
        self.key, self.saver = key, saver
        self._started = self._trained = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        """After a resume: logs the checkpointed epochs again, as they were (sent once)."""
        if self.saver is not None and self.saver.resumed is not None:
            log_checkpointed_epochs(
                self.tracker, self.saver.history, self.saver.timestamps, self.key
            )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts the epoch's clock."""
        self._started = self._trained = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Marks the end of the epoch's training steps (validation follows)."""
        # fit() evaluates the validation data after the epoch's training steps.
        self._trained = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Logs the epoch's metrics and timing to MLflow and the log."""
        now = time.perf_counter()
        seconds = now - self._started
        train_seconds = (self._trained if self._trained > self._started else now) - self._started
        logs = logs if logs is not None else {}
        logs[contract.METRIC_EPOCH_SECONDS] = seconds
        timestamp = int(time.time() * 1000)
        loss = logs.get(contract.METRIC_LOSS)
        if self.saver is not None and loss is not None and math.isfinite(float(loss)):
            self.saver.save(self.model, epoch, logs, timestamp)
        self.tracker.log_metrics(
            {self.key(k): v for k, v in logs.items() if k in EPOCH_METRICS},
            step=epoch + 1,
            timestamp_ms=timestamp,
        )
        shown = ", ".join(f"{k}={logs[k]:.4f}" for k in contract.history_metrics() if k in logs)
        log.info(
            "%s %d/%d: %.1f s (%.2f steps/s training), %s",
            self.key("epoch"),
            epoch + 1,
            self.epochs,
            seconds,
            self.steps_per_epoch / max(train_seconds, 1e-9),
            shown,
        )


class StepProgress(keras.callbacks.Callback):
    """Logs the step counter with its rate and ETA about every tenth of an epoch.

    For logs that are not a terminal (Vertex, files), where Keras' progress bar would be one
    line per update or nothing: ten lines an epoch say that training moves and when the
    epoch and the run will end, without flooding. The batch hook reads no metric, so Keras
    keeps its logs on the device (``_supports_tf_logs``) and nothing waits on it.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, share: float = 0.1):
        super().__init__()
        self._supports_tf_logs = True
        self.steps_per_epoch, self.epochs = max(1, steps_per_epoch), epochs
        self.every = max(1, round(self.steps_per_epoch * share))
        self._epoch, self._started = 0, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts the epoch's step clock."""
        self._epoch, self._started = epoch, time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Logs the step count, rate and ETA every ``every`` steps."""
        step = batch + 1
        if step % self.every or step >= self.steps_per_epoch:
            return
        rate = step / max(time.perf_counter() - self._started, 1e-9)
        left_in_epoch = (self.steps_per_epoch - step) / rate
        left_in_run = left_in_epoch + (self.epochs - self._epoch - 1) * self.steps_per_epoch / rate
        log.info(
            "epoch %d/%d: step %d/%d (%d%%), %.2f steps/s, epoch ETA %.0f s, run ETA %.0f s",
            self._epoch + 1,
            self.epochs,
            step,
            self.steps_per_epoch,
            100 * step // self.steps_per_epoch,
            rate,
            left_in_epoch,
            left_in_run,
        )


def progress(steps_per_epoch: int, epochs: int, tty: bool) -> tuple[int, list]:
    """Keras' ``verbose`` and the progress callbacks: a bar on a terminal, else log lines."""
    if tty:
        return 1, []
    return 0, [StepProgress(steps_per_epoch, epochs)]
