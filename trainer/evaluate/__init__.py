"""Evaluate (the pipeline's Evaluator): exact test recall@k of the served model, with baselines.

The face of the wing: everything outside ``trainer.evaluate`` imports from here. It reads
the model through ``trainer.serving``: no training code, no TensorFlow Recommenders.
``intervals_on_test`` / ``intervals_on_validation`` turn per-buyer rows into the contract's
intervals, lifts and verdicts (what the bootstrap benchmark times). ``EvaluationData`` and
``rows_on_test`` score any exported model on an ingest folder's test split (the promotion gate
evaluates an older champion on a challenger's split with them).
"""

from trainer.evaluate.exact import EvaluationData, rows_on_test, run_evaluation
from trainer.evaluate.uncertainty import intervals_on_test, intervals_on_validation

__all__ = [
    "EvaluationData",
    "intervals_on_test",
    "intervals_on_validation",
    "rows_on_test",
    "run_evaluation",
]
