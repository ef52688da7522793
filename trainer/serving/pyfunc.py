"""The served model as an MLflow pyfunc: raw buyer features in, top-k product ids and scores out.

``mlflow.pyfunc.load_model`` (and ``mlflow models serve``) unpickles ``ServingPyfunc`` by
reference (the class is found as ``trainer.serving.pyfunc.ServingPyfunc``), so loading needs
the package installed and nothing else: the SavedModel travels inside the MLflow model as the
artifact ``contract.MLFLOW_MODEL_SAVED_MODEL``. ``predict`` runs the same signature through the
same ``serve_top_k`` as the evaluate step, so its answers are the SavedModel's.

MLflow is imported at the top here only: the wing's face never imports this module (it is what
MLflow loads), so ``import trainer.serving`` stays free of MLflow.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from trainer import contract
from trainer.serving.export import load_serving_model, serve_top_k


class ServingPyfunc(mlflow.pyfunc.PythonModel):
    """The exported SavedModel behind MLflow's pyfunc interface (a DataFrame of buyers in)."""

    def load_context(self, context) -> None:
        """Loads the SavedModel's ``serving_default`` signature once per process."""
        self._serve = load_serving_model(context.artifacts[contract.MLFLOW_MODEL_SAVED_MODEL])

    # ``model_input`` carries no type hint on purpose: MLflow would otherwise infer a second
    # signature from it and warn that it differs from the one saved with the model.
    def predict(self, context, model_input, params: dict | None = None) -> pd.DataFrame:
        """Top-k products per buyer row: columns ``product_ids`` and ``scores`` (lists).

        Args:
            context: MLflow's model context (unused; the model was loaded by load_context).
            model_input: One row per buyer, the raw columns of the model's signature.
            params: ``k`` (products per buyer, at most the SavedModel's top-k).
        """
        k = int((params or {}).get(contract.PARAM_SERVE_K) or contract.SERVING_K)
        if not hasattr(self, "_serve"):  # a python_model used without MLflow loading it
            self.load_context(context)
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if not len(frame):
            return pd.DataFrame({contract.OUTPUT_PRODUCT_IDS: [], contract.OUTPUT_SCORES: []})
        ids, scores = serve_top_k(self._serve, frame.reset_index(drop=True))
        return pd.DataFrame(
            {
                contract.OUTPUT_PRODUCT_IDS: [list(row[:k]) for row in ids],
                contract.OUTPUT_SCORES: [
                    np.asarray(row[:k], np.float64).tolist() for row in scores
                ],
            }
        )
