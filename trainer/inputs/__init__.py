"""Inputs: typed raw columns, point-in-time buyer features, training's frames and datasets.

The face of the wing: everything outside ``trainer.inputs`` imports from here. ``columns``
turns the contract's column types into NumPy / TensorFlow types and reads what training
needs from the ingest and transform folders; ``buyer_features`` derives each row's buyer
history, recency, frequency and monetary value from strictly earlier purchases; ``protocol``
names what must agree for two runs to be compared (data digest, split, catalog, evaluation).
"""

from trainer.inputs.buyer_features import add_buyer_features, as_of_time, query_frame
from trainer.inputs.columns import (
    NEUTRAL_VALUES,
    TrainingData,
    load_training_data,
    make_dataset,
    make_datasets,
    query_history_length,
    raw_arrays,
    raw_dtype,
    raw_feature_spec,
    raw_specs,
    raw_tensors,
    validation_queries,
)
from trainer.inputs.protocol import protocol_tags

__all__ = [
    "NEUTRAL_VALUES",
    "TrainingData",
    "add_buyer_features",
    "as_of_time",
    "load_training_data",
    "make_dataset",
    "make_datasets",
    "protocol_tags",
    "query_frame",
    "query_history_length",
    "raw_arrays",
    "raw_dtype",
    "raw_feature_spec",
    "raw_specs",
    "raw_tensors",
    "validation_queries",
]
