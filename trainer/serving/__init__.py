"""Serving: the exported SavedModel (raw buyer features in, top-k products out) and its use.

The face of the wing: everything outside ``trainer.serving`` imports from here. Evaluation
reads models through it without importing any training code. ``mlflow_model`` saves the
served model as an MLflow pyfunc model (``pyfunc.ServingPyfunc``, loaded by MLflow, not
imported here: the face stays free of MLflow).
"""

from trainer.serving.export import (
    embed_catalog,
    export_serving_model,
    load_serving_model,
    serve_top_k,
    top_k_for_queries,
)
from trainer.serving.mlflow_model import model_signature, save_mlflow_model, signature_columns

__all__ = [
    "embed_catalog",
    "export_serving_model",
    "load_serving_model",
    "model_signature",
    "save_mlflow_model",
    "serve_top_k",
    "signature_columns",
    "top_k_for_queries",
]
