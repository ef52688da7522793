"""Evaluate (the pipeline's Evaluator): exact test recall@k of the served model, with baselines.

The face of the wing: everything outside ``trainer.evaluate`` imports from here. It reads
the model through ``trainer.serving``: no training code, no TensorFlow Recommenders.
"""

from trainer.evaluate.exact import run_evaluation

__all__ = ["run_evaluation"]
