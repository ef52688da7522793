"""Serving: the exported SavedModel (raw buyer features in, top-k products out) and its use.

The face of the wing: everything outside ``trainer.serving`` imports from here. Evaluation
reads models through it without importing any training code.
"""

from trainer.serving.export import (
    embed_catalog,
    export_serving_model,
    load_serving_model,
    serve_top_k,
    top_k_for_queries,
)

__all__ = [
    "embed_catalog",
    "export_serving_model",
    "load_serving_model",
    "serve_top_k",
    "top_k_for_queries",
]
