"""Saving the served model as an MLflow model: signature, input example, the SavedModel inside.

``save_mlflow_model`` writes an MLflow pyfunc model folder (``MLmodel``, ``python_model.pkl``,
the SavedModel as an artifact, ``input_example.json``, requirements) with no MLflow server:
the train step then logs the folder to its run through its tracker (under
``contract.MLFLOW_MODEL_ARTIFACT``), like every other artifact, so a tracking outage delays it
and never loses it. MLflow recognises a run artifact folder holding ``MLmodel`` as a model:
``runs:/<run id>/model`` loads, serves and registers (mlflow/tracking/_model_registry/
fluent.py ``_register_model``: "List artifacts ... to see if the run has artifacts. If so use
the run's artifact location as source").

MLflow is imported inside the functions: ``import trainer.serving`` stays free of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pandas as pd

from trainer import contract, inputs
from trainer.serving.export import load_serving_model

# TensorFlow dtype name of a raw column -> MLflow column type. Floats are declared double:
# JSON numbers arrive as float64 and MLflow refuses to narrow them to a float column.
_MLFLOW_TYPES = {"string": "string", "int64": "long", "float32": "double", "float64": "double"}
EXAMPLE_ROWS = 2


def signature_columns(serving_dir: str) -> dict[str, str]:
    """The SavedModel's raw input columns and their TensorFlow dtype names, in signature order."""
    serve = load_serving_model(serving_dir)
    specs = serve.structured_input_signature[1]
    return {name: specs[name].dtype.name for name in sorted(specs)}


def model_signature(columns: dict[str, str]):
    """The MLflow signature: raw buyer columns in, product id and score lists out, param k."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(_MLFLOW_TYPES[dtype], name) for name, dtype in columns.items()]),
        outputs=Schema(
            [
                ColSpec(Array(DataType.string), contract.OUTPUT_PRODUCT_IDS),
                ColSpec(Array(DataType.double), contract.OUTPUT_SCORES),
            ]
        ),
        params=ParamSchema([ParamSpec(contract.PARAM_SERVE_K, "long", contract.SERVING_K)]),
    )


def input_example(queries: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A few real buyers' raw features (typed as the signature says), for the model's example."""
    arrays = inputs.raw_arrays(queries.head(EXAMPLE_ROWS), list(columns))
    frame = pd.DataFrame({name: arrays[name] for name in columns})
    for name, dtype in columns.items():
        if _MLFLOW_TYPES[dtype] == "double":
            frame[name] = frame[name].astype("float64")
    return frame


def _requirements() -> list[str]:
    """The package itself: everything the pyfunc imports comes with it."""
    from importlib import metadata

    try:
        return [f"b2b-recs[trainer]=={metadata.version('b2b-recs')}"]
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return ["b2b-recs[trainer]"]


def save_mlflow_model(serving_dir: str, dest: str, queries: pd.DataFrame) -> str:
    """Saves the SavedModel as an MLflow pyfunc model folder at ``dest``; returns ``dest``.

    Args:
        serving_dir: The exported SavedModel (``export_serving_model``).
        dest: The MLflow model folder to write (replaced if a killed attempt left one).
        queries: Raw buyer rows; the first few become the input example.
    """
    columns = signature_columns(serving_dir)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    staging = tempfile.mkdtemp(prefix="mlflow-model-")
    # MLflow copies an artifact folder under artifacts/<its base name>: staged under a fixed
    # name, the SavedModel is always at artifacts/saved_model (what an upload points at).
    saved_model = os.path.join(staging, contract.MLFLOW_MODEL_SAVED_MODEL)
    shutil.copytree(serving_dir, saved_model)
    try:
        _save(dest, saved_model, columns, queries)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _save(dest: str, saved_model: str, columns: dict[str, str], queries: pd.DataFrame) -> None:
    import mlflow.pyfunc

    from trainer.serving.pyfunc import ServingPyfunc

    mlflow.pyfunc.save_model(
        path=dest,
        python_model=ServingPyfunc(),
        artifacts={contract.MLFLOW_MODEL_SAVED_MODEL: saved_model},
        signature=model_signature(columns),
        input_example=(input_example(queries, columns), {contract.PARAM_SERVE_K: 10}),
        # Given, not inferred: inference would load the model in a subprocess to list imports.
        pip_requirements=_requirements(),
    )
