"""Exact retrieval and its measure: top-k over a whole catalog, recall@k, the heuristics.

The face of the wing: everything outside ``trainer.retrieval`` imports from here. ``topk``
is the chunked exact top-k (NumPy and TensorFlow, the same tie rule) and seen-item masks;
``metrics`` builds the evaluation pairs and computes recall@k of a model's lists and of the
baselines; ``per_buyer`` keeps each buyer's targets and hits at each k (repeat and new apart),
the rows every interval and slice is computed from; ``bootstrap`` resamples those buyers
(paired across scorers) for intervals of recall and lift and Holm-corrected verdicts, for
several slices from one set of draws; ``slices`` gives products their popularity band and
rank, buyers their earlier purchase days, and top-k lists their beyond-accuracy figures. NumPy and
pandas only (the TensorFlow kernel imports TensorFlow when called).
"""

from trainer.retrieval.bootstrap import (
    BootstrapResult,
    Comparison,
    Estimate,
    paired_bootstrap,
    sliced_bootstrap,
)
from trainer.retrieval.metrics import (
    EvalSet,
    baseline_recalls,
    baseline_top_k,
    build_eval_set,
    catalog_index,
    recall_at_k,
    seen_rows,
)
from trainer.retrieval.per_buyer import per_buyer_rows, recalls_of, write_rows
from trainer.retrieval.slices import Popularity, beyond_accuracy, earlier_days, popularity
from trainer.retrieval.strong import precomputed_top_k, strong_baselines
from trainer.retrieval.topk import (
    DEFAULT_CHUNK,
    chunked_top_k,
    chunked_top_k_tf,
    drop_masked,
    exact_top_k,
    exact_top_k_chunked,
    mask_seen,
    mask_seen_tf,
)

__all__ = [
    "DEFAULT_CHUNK",
    "BootstrapResult",
    "Comparison",
    "Estimate",
    "EvalSet",
    "Popularity",
    "baseline_recalls",
    "beyond_accuracy",
    "baseline_top_k",
    "build_eval_set",
    "catalog_index",
    "chunked_top_k",
    "chunked_top_k_tf",
    "drop_masked",
    "earlier_days",
    "exact_top_k",
    "exact_top_k_chunked",
    "mask_seen",
    "mask_seen_tf",
    "paired_bootstrap",
    "per_buyer_rows",
    "popularity",
    "precomputed_top_k",
    "recall_at_k",
    "recalls_of",
    "seen_rows",
    "sliced_bootstrap",
    "strong_baselines",
    "write_rows",
]
