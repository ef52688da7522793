"""Transform (the pipeline's Transform step): ``preprocessing_fn`` on Beam, analysed on train.

The face of the wing: everything outside ``trainer.transform`` imports from here. The only
wing that imports Beam.
"""

from trainer.transform.beam import run_transform

__all__ = ["run_transform"]
