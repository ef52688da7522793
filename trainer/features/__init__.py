"""Features: the tf.Transform ``preprocessing_fn`` of a feature config, and what it produces.

The face of the wing: everything outside ``trainer.features`` imports from here.
TensorFlow and tf.Transform only, no Beam: training and a TFX Trainer import it.
"""

from trainer.features.preprocessing import (
    CATEGORICAL,
    PAD,
    PRODUCT_KEY,
    SEQUENCE,
    all_features,
    cardinality,
    make_preprocessing_fn,
    preprocessing_fn,
    transformed_name,
    vocabulary_name,
)

__all__ = [
    "CATEGORICAL",
    "PAD",
    "PRODUCT_KEY",
    "SEQUENCE",
    "all_features",
    "cardinality",
    "make_preprocessing_fn",
    "preprocessing_fn",
    "transformed_name",
    "vocabulary_name",
]
