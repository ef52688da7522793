"""Per-epoch checkpoints, so a killed or preempted training resumes at its last whole epoch.

After each epoch ``EpochCheckpoint`` writes the model and the optimizer (its slots and step
counter, so the learning-rate schedule goes on where it was) as a TensorFlow checkpoint,
then ``state.json``: the epochs done, the history so far, the early-stopping state and which
checkpoint holds the best epoch's weights. ``state.json`` is replaced atomically after the
checkpoint it names is whole, so a kill at any moment leaves the previous epoch's state
usable; older checkpoints are removed once the new state names its own.

``load_state`` reads it back only when it belongs to the same training: the same identity
(the run key, the resolved config with its seed, the input folders). ``restore`` puts the
model and optimizer back, and ``skip_shuffles`` makes the next epoch see the shuffle order
it would have seen without the interruption (each ``iter()`` of the seeded, reshuffling
train dataset draws the next order, and Keras' ``fit`` makes one per epoch plus one).

What is not resumed bit for bit: the dropout masks (Keras draws them from stateful random
ops whose state is not checkpointable), so a resumed training ends within what another
dropout draw gives, not on the same bits; see bench/RESULTS.md for the measured difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time

import tensorflow as tf
import tf_keras as keras

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1


def identity(**parts: str) -> str:
    """A digest naming one training (what must be equal for a checkpoint to be resumed)."""
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class State:
    """What ``state.json`` holds."""

    identity: str
    run_key: str
    epochs_done: int
    history: dict[str, list[float]]
    timestamps: list[int]  # when each epoch's metric points were logged (ms)
    stopper: dict  # EarlyStopping's wait, best, best_epoch, stopped_epoch
    last: str  # checkpoint prefix (relative to the folder) of the last epoch
    best: str  # ... and of the best epoch so far (may be the same)
    stopped: bool = False  # early stopping ended the training
    version: int = STATE_VERSION


def load_state(folder: str, expected_identity: str) -> State | None:
    """The folder's state when it is this training's and whole; None otherwise (logged)."""
    path = os.path.join(folder, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            state = State(**json.load(f))
    except (ValueError, TypeError) as err:
        log.warning("checkpoint state %s is unreadable (%s); training starts afresh", path, err)
        return None
    if state.version != STATE_VERSION or state.identity != expected_identity:
        log.warning(
            "checkpoint in %s belongs to another training (config, seed, run key or inputs "
            "differ); training starts afresh",
            folder,
        )
        return None
    return state


def read_run_key(folder: str) -> str:
    """The run key a folder's checkpoint was written under ("" when there is none)."""
    path = os.path.join(folder, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return ""
    try:
        with tf.io.gfile.GFile(path) as f:
            return str(json.load(f).get("run_key", ""))
    except ValueError:
        return ""


def _checkpoint(model: keras.Model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def restore(model: keras.Model, folder: str, state: State, build) -> list:
    """Puts the last epoch's model and optimizer back; returns the best epoch's weights.

    Args:
        model: The compiled model, freshly built from the same config.
        folder: The checkpoint folder.
        state: Its state.
        build: Called once to create the model's variables (a forward pass on data that is
            not the shuffled train set, so the shuffle order is not drawn).
    """
    build()
    model.optimizer.build(model.trainable_variables)  # slots exist: restored at once
    _checkpoint(model).read(os.path.join(folder, state.best)).assert_existing_objects_matched()
    best_weights = model.get_weights()
    _checkpoint(model).read(os.path.join(folder, state.last)).assert_existing_objects_matched()
    log.info(
        "resumed from the checkpoint of epoch %d in %s (best epoch so far: %d)",
        state.epochs_done,
        folder,
        state.stopper.get("best_epoch", 0) + 1,
    )
    return best_weights


def skip_shuffles(dataset: tf.data.Dataset, epochs_done: int) -> None:
    """Draws the shuffle orders of the epochs already done, so the next one is as it was."""
    for _ in range(epochs_done):
        iter(dataset)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that starts from a checkpoint's state instead of from scratch."""

    def __init__(self, resumed: tuple[dict, list] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._resumed = resumed

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Resets as Keras does, then takes the checkpoint's state and best weights."""
        super().on_train_begin(logs)
        if self._resumed is not None:
            state, best_weights = self._resumed
            self.wait, self.best = state["wait"], state["best"]
            self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
            self.best_weights = best_weights

    def state(self) -> dict:
        """The state to checkpoint."""
        return {
            "wait": int(self.wait),
            "best": float(self.best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
        }


class EpochSaver:
    """Checkpoints each finished epoch; called by ``callbacks.EpochTracker``.

    The tracker calls it after the stopper has seen the epoch and before the epoch's metrics
    are logged, with the time those points will carry: a kill between the two leaves a
    checkpoint whose epochs are logged again on resume with the same step and time, which a
    taken-over run skips when it holds them (so each epoch's points are in MLflow once).

    Args:
        folder: Where the checkpoints and ``state.json`` go.
        identity: ``identity(...)`` of this training.
        run_key: The MLflow run key (a later command on the same folder reuses it).
        stopper: The early stopping whose state is kept (None: no early stopping).
        resumed: The state this training resumed from (its history is carried on).
    """

    def __init__(
        self,
        folder: str,
        identity: str,
        run_key: str,
        stopper: ResumableEarlyStopping | None = None,
        resumed: State | None = None,
    ):
        self.folder, self.identity, self.run_key, self.stopper = folder, identity, run_key, stopper
        self.resumed = resumed
        self.history = {k: list(v) for k, v in (resumed.history if resumed else {}).items()}
        self.timestamps = list(resumed.timestamps) if resumed else []
        self.best = resumed.best if resumed else ""
        self.seconds: list[float] = []  # what writing each checkpoint took (the benchmark's)

    def save(self, model: keras.Model, epoch: int, logs: dict, timestamp_ms: int) -> None:
        """Writes the epoch's checkpoint, then the state naming it, then drops older ones."""
        started = time.perf_counter()
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.timestamps.append(int(timestamp_ms))
        name = f"epoch-{epoch + 1}"
        tf.io.gfile.makedirs(self.folder)
        _checkpoint(model).write(os.path.join(self.folder, name))
        stopper = self.stopper.state() if self.stopper else {}
        if not self.best or not self.stopper or stopper["best_epoch"] == epoch:
            self.best = name
        state = State(
            identity=self.identity,
            run_key=self.run_key,
            epochs_done=epoch + 1,
            history=self.history,
            timestamps=self.timestamps,
            stopper=stopper,
            last=name,
            best=self.best,
            stopped=bool(model.stop_training),
        )
        _write_state(self.folder, state)
        _remove_other_checkpoints(self.folder, {name, self.best})
        self.seconds.append(time.perf_counter() - started)


def _write_state(folder: str, state: State) -> None:
    path = os.path.join(folder, STATE_FILE)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        json.dump(dataclasses.asdict(state), f)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _remove_other_checkpoints(folder: str, keep: set[str]) -> None:
    for name in tf.io.gfile.listdir(folder):
        prefix = name.split(".")[0]
        if prefix.startswith("epoch-") and prefix not in keep:
            tf.io.gfile.remove(os.path.join(folder, name))


def size_bytes(folder: str) -> int:
    """Bytes the folder's checkpoints take (for the benchmark and the logs)."""
    total = 0
    for name in tf.io.gfile.listdir(folder):
        total += tf.io.gfile.stat(os.path.join(folder, name)).length
    return total


def remove(folder: str) -> None:
    """Removes a finished training's checkpoints (the exported model is what is kept)."""
    if os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)
    elif tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)
