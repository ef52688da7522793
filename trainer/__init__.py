"""Plain Python + TensorFlow logic of the pipeline steps (no kfp here)."""

import os

# tf.Transform and TF Recommenders need Keras 2 (tf_keras); TF reads this at import time, so
# it is set before anything in this package can import TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
