"""Evaluate (the pipeline's Evaluator): exact test recall@k of the served model, with baselines.

The face of the wing: everything outside ``trainer.evaluate`` imports from here. It reads
the model through ``trainer.serving``: no training code, no TensorFlow Recommenders.
``intervals_on_test`` / ``intervals_on_validation`` turn per-buyer rows into the contract's
intervals, lifts and verdicts (what the bootstrap benchmark times).
"""

from trainer.evaluate.exact import run_evaluation
from trainer.evaluate.uncertainty import intervals_on_test, intervals_on_validation

__all__ = ["intervals_on_test", "intervals_on_validation", "run_evaluation"]
