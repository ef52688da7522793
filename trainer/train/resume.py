"""Resuming a killed training: where its checkpoints are, and what it logged before it died.

``Resumable`` names a training's checkpoint folders (``<model>/checkpoint/{fit,refit}``) and
the identity a checkpoint must carry to be resumed (trainer/train/checkpoint.py). A training
given no run key takes the one its folder's checkpoint was written under, so the same command
on the same work dir goes on with the same MLflow run. ``replay_killed_attempt`` sends what a
killed attempt on the folder had logged (its tracking journal) before this attempt takes the
run over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid

from trainer import config as cfg
from trainer import layout, tracking
from trainer.tracking import RunTracker
from trainer.train import callbacks, checkpoint

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Resumable:
    """Where a training's checkpoints go and what they must match to be resumed."""

    model_dir: str
    identity: str
    run_key: str

    @classmethod
    def of(
        cls,
        config: cfg.ExperimentConfig,
        pair: tuple[cfg.FeatureConfig, cfg.ModelConfig],
        model_dir: str,
        inputs: tuple,
        run_key: str = "",
        continue_from: str = "",
    ) -> Resumable:
        """The training's checkpoints; with no run key, the one its checkpoint names (or new).

        With ``continue_from`` (a halving rung's previous model folder) its checkpoint is
        copied in first (:func:`adopt`).
        """
        if continue_from:
            adopt(continue_from, model_dir)
        run_key = run_key or checkpoint.read_run_key(layout.checkpoint_path(model_dir, "fit"))
        run_key = run_key or uuid.uuid4().hex
        identity = checkpoint.identity(
            run_key=run_key,
            config=cfg.dump_config(config),
            pair=f"{pair[0].id}/{pair[1].id}",
            inputs=repr(inputs),
        )
        return cls(model_dir, identity, run_key)

    def folder(self, phase: str) -> str:
        """The checkpoint folder of a phase (``fit``, ``refit``)."""
        return layout.checkpoint_path(self.model_dir, phase)

    def load(self, phase: str) -> checkpoint.State | None:
        """The phase's checkpoint state, when it is this training's."""
        return checkpoint.load_state(self.folder(phase), self.identity)


def adopt(source_model_dir: str, model_dir: str) -> bool:
    """Copies an earlier task's fit checkpoint into this folder, unless it has its own.

    Successive halving trains a trial rung by rung, each rung a new pipeline task with a new
    output folder: the rung's training starts from the previous rung's checkpoint, copied here,
    and ``Resumable`` accepts it since the run key, config and inputs are the same. A folder
    that already holds a checkpoint (a retried task) keeps it: it went on from the copy.

    Returns:
        Whether a checkpoint was copied.
    """
    import tensorflow as tf

    source = layout.checkpoint_path(source_model_dir, "fit")
    dest = layout.checkpoint_path(model_dir, "fit")
    if tf.io.gfile.exists(os.path.join(dest, checkpoint.STATE_FILE)):
        return False
    if not tf.io.gfile.exists(os.path.join(source, checkpoint.STATE_FILE)):
        raise FileNotFoundError(f"no checkpoint to continue from in {source}")
    tf.io.gfile.makedirs(dest)
    # state.json last: a copy cut short leaves no state naming missing files.
    names = sorted(tf.io.gfile.listdir(source), key=lambda n: n == checkpoint.STATE_FILE)
    for name in names:
        tf.io.gfile.copy(os.path.join(source, name), os.path.join(dest, name), overwrite=True)
    log.info("continuing from the checkpoint in %s", source)
    return True


def resume_from(
    two_tower,
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


def whole(state: checkpoint.State | None, epochs: int, tracker: RunTracker, key=str) -> bool:
    """Whether the checkpoint holds the whole phase (then its epochs are logged again, once)."""
    if state is None or not (state.stopped or state.epochs_done >= epochs):
        return False
    log.info(
        "the checkpoint holds the whole phase (%d epoch(s)); not trained again", state.epochs_done
    )
    callbacks.log_checkpointed_epochs(tracker, state.history, state.timestamps, key=key)
    return True


def saver(
    resumable: Resumable | None,
    phase: str,
    state: checkpoint.State | None,
    stopper: checkpoint.ResumableEarlyStopping | None = None,
) -> checkpoint.EpochSaver | None:
    """The phase's per-epoch checkpointing (None without a ``resumable``)."""
    if resumable is None:
        return None
    return checkpoint.EpochSaver(
        resumable.folder(phase), resumable.identity, resumable.run_key, stopper, state
    )


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
