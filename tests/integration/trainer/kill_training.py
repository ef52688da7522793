"""Runs one training and SIGKILLs itself at a chosen moment (the kill-and-resume tests' driver).

    python tests/integration/trainer/kill_training.py MOMENT EPOCH CONFIG INGEST XF MODEL URI

MOMENT: ``mid-epoch`` (the first step of epoch EPOCH), ``before-log`` (epoch EPOCH is
checkpointed, its points not yet logged), ``after-epoch`` (epoch EPOCH is logged), ``export``
(half-way through writing the exported serving model). SIGKILL is what the kernel's OOM
killer and a preempted machine send: no handler runs and nothing is flushed by Python.
Only test code patches here; the product runs as it does anywhere.
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(moment: str, epoch: int, config_path: str, ingest: str, xf: str, model: str, uri: str):
    from trainer import config as cfg
    from trainer import serving, train
    from trainer.train import callbacks, checkpoint

    if moment == "mid-epoch":
        original_batch = callbacks.StepProgress.on_train_batch_end

        def on_batch(self, batch, logs=None):
            if self._epoch + 1 == epoch:
                die()
            original_batch(self, batch, logs)

        callbacks.StepProgress.on_train_batch_end = on_batch
    elif moment == "before-log":
        original_save = checkpoint.EpochSaver.save

        def save(self, model_, epoch_, logs, timestamp_ms):
            original_save(self, model_, epoch_, logs, timestamp_ms)
            if epoch_ + 1 == epoch and self.stopper is not None:
                die()

        checkpoint.EpochSaver.save = save
    elif moment == "after-epoch":
        original_end = callbacks.EpochTracker.on_epoch_end

        def on_epoch_end(self, epoch_, logs=None):
            original_end(self, epoch_, logs)
            if epoch_ + 1 == epoch and self.key("x") == "x":
                die()

        callbacks.EpochTracker.on_epoch_end = on_epoch_end
    elif moment == "export":
        original_export = serving.export_serving_model

        def export(path, *args, **kwargs):
            if os.path.basename(path) == "serving":  # the final export (after the selected one)
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "saved_model.pb"), "wb") as f:
                    f.write(b"half a model")
                die()
            return original_export(path, *args, **kwargs)

        serving.export_serving_model = export
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    train.run_training(cfg.load_config(config_path), ingest, xf, model, tracking_uri=uri)
    raise SystemExit("the training ended without being killed")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], int(args[1]), *args[2:])
