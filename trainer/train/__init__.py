"""Train (the pipeline's Trainer): the two-tower model, its epoch loop, calibration, refit.

The face of the wing: everything outside ``trainer.train`` imports from here. ``model`` is
the two towers and the optimizer; ``callbacks`` the per-epoch validation, progress and
non-finite loss checks; ``calibration`` scales the repurchase part on validation;
``checkpoint`` writes and reads the per-epoch checkpoints, ``resume`` finds a killed
attempt's and replays what it logged; ``record`` is the run's name, tags and summary;
``loop`` is ``run_training``, the whole step.
"""

from trainer.train.checkpoint import EpochSaver, size_bytes
from trainer.train.loop import run_training
from trainer.train.model import (
    TwoTowerModel,
    cardinalities,
    make_optimizer,
    sparse_repurchase_bonus,
)

__all__ = [
    "EpochSaver",
    "TwoTowerModel",
    "cardinalities",
    "make_optimizer",
    "run_training",
    "size_bytes",
    "sparse_repurchase_bonus",
]
