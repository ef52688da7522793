"""Training-loop callbacks on a tiny Keras model: the non-finite loss guard and epoch tracking."""

import logging
import math

import numpy as np
import pytest
import tf_keras as keras
from mlflow.tracking import MlflowClient

from trainer import contract
from trainer.tracking.tracker import RunTracker
from trainer.train.callbacks import EpochTracker, NonFiniteLossError, StopOnNonFiniteLoss


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_guard_lets_finite_losses_pass_and_names_the_epoch_of_the_first_bad_one():
    guard = StopOnNonFiniteLoss()
    guard.on_epoch_end(0, {"loss": 0.5})
    with pytest.raises(NonFiniteLossError, match="inf at epoch 3") as info:
        guard.on_epoch_end(2, {"loss": float("inf")})
    assert info.value.epoch == 3 and math.isinf(info.value.loss)


def test_a_nan_loss_stops_fit_with_an_error_after_that_epoch():
    x = np.ones((64, 2), np.float32)
    x[40] = np.nan  # one batch of the first epoch has a NaN input, so a NaN loss
    y = np.ones((64, 1), np.float32)
    model = _tiny_model()
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(NonFiniteLossError, match="nan at epoch 1"):
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[seen, StopOnNonFiniteLoss()])
    assert epochs == [0]


def test_epoch_tracker_logs_every_epoch_with_its_duration(tmp_path, caplog):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = RunTracker(tracking_uri, "callbacks", backlog_dir=str(tmp_path))
    run_id = tracker.start("tiny", {}, {})
    x, y = np.ones((32, 2), np.float32), np.ones((32, 1), np.float32)
    with caplog.at_level(logging.INFO, logger="trainer.train.callbacks"):
        fit = _tiny_model().fit(
            x,
            y,
            batch_size=8,
            epochs=2,
            validation_data=(x, y),
            verbose=0,
            callbacks=[EpochTracker(tracker, steps_per_epoch=4, epochs=2)],
        )
    tracker.finish()
    assert len(fit.history[contract.METRIC_EPOCH_SECONDS]) == 2
    client = MlflowClient(tracking_uri)
    for name in (contract.METRIC_EPOCH_SECONDS, contract.METRIC_LOSS, contract.METRIC_VAL_LOSS):
        history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2], name
    seconds = client.get_metric_history(run_id, contract.METRIC_EPOCH_SECONDS)
    assert all(m.value > 0 for m in seconds)
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer.train.callbacks"]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2: ") and "steps/s" in lines[1]
    assert "val_loss=" in lines[1]


def test_step_progress_logs_about_ten_lines_an_epoch_with_rate_and_eta(caplog):
    from trainer.train.callbacks import StepProgress, progress

    x, y = np.ones((400, 2), np.float32), np.ones((400, 1), np.float32)
    with caplog.at_level(logging.INFO, logger="trainer.train.callbacks"):
        _tiny_model().fit(
            x, y, batch_size=4, epochs=2, verbose=0, callbacks=[StepProgress(100, epochs=2)]
        )
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) == 18  # steps 10, 20, ..., 90 of each epoch; the epoch's end says the rest
    assert lines[0].startswith("epoch 1/2: step 10/100 (10%), ")
    assert lines[-1].startswith("epoch 2/2: step 90/100 (90%), ")
    assert "epoch ETA" in lines[0] and "run ETA" in lines[0]
    # A terminal gets Keras' progress bar instead of log lines.
    assert progress(100, 2, tty=True) == (1, [])
    verbose, extra = progress(100, 2, tty=False)
    assert verbose == 0 and isinstance(extra[0], StepProgress)
