"""Feature transforms: the tf.Transform ``preprocessing_fn`` generated from a feature config.

The same ``Feature`` entries drive the towers (trainer/model.py), so the names of the
transformed features and their sizes are defined here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from trainer import config as cfg

# Transforms whose output is an integer id looked up in an embedding table.
CATEGORICAL = ("vocabulary", "hashing", "bucketize")


def transformed_name(feature: cfg.Feature) -> str:
    """Name of a feature's output in the transformed examples."""
    return f"{feature.name}__{feature.transform}"


def vocabulary_name(feature: cfg.Feature) -> str:
    """File name of a vocabulary feature's vocabulary in the transform output."""
    return f"{feature.name}_vocab"


def all_features(feature_config: cfg.FeatureConfig) -> list[cfg.Feature]:
    """Features of both towers, each transformed output once."""
    seen, out = set(), []
    for feature in (*feature_config.buyer, *feature_config.product):
        if transformed_name(feature) not in seen:
            seen.add(transformed_name(feature))
            out.append(feature)
    return out


def _transform(feature: cfg.Feature, x: tf.Tensor) -> tf.Tensor:
    if feature.transform == "vocabulary":
        return tft.compute_and_apply_vocabulary(
            x,
            num_oov_buckets=feature.oov_buckets,
            frequency_threshold=feature.min_frequency if feature.min_frequency > 1 else None,
            vocab_filename=vocabulary_name(feature),
        )
    if feature.transform == "hashing":
        return tft.hash_strings(tf.strings.as_string(x) if x.dtype != tf.string else x,
                                feature.hash_buckets)
    x = tf.cast(x, tf.float32)
    if feature.transform == "bucketize":
        return tft.bucketize(x, feature.num_buckets)
    if feature.transform == "zscore":
        return tft.scale_to_z_score(x)
    if feature.transform == "log":
        return tft.scale_to_z_score(tf.math.log1p(tf.maximum(x, 0.0)))
    raise ValueError(f"feature {feature.name}: unknown transform {feature.transform!r}")


def make_preprocessing_fn(feature_config: cfg.FeatureConfig) -> Callable[[dict], dict]:
    """The ``preprocessing_fn`` for tf.Transform built from one feature config."""
    features = all_features(feature_config)

    def preprocessing_fn(inputs: dict) -> dict:
        return {transformed_name(f): _transform(f, inputs[f.name]) for f in features}

    return preprocessing_fn


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    """TFX Transform module entry point.

    ``custom_config["feature_config"]`` holds the feature config as JSON (``to_dict`` form).
    """
    return make_preprocessing_fn(feature_config_from_json(custom_config["feature_config"]))(inputs)


def feature_config_from_json(text: str) -> cfg.FeatureConfig:
    """Rebuilds a FeatureConfig from ``json.dumps(config.to_dict(feature_config))``."""
    data = json.loads(text)
    return cfg.FeatureConfig(
        id=data["id"],
        name=data["name"],
        buyer=tuple(cfg.Feature(**f) for f in data["buyer"]),
        product=tuple(cfg.Feature(**f) for f in data["product"]),
    )


def cardinality(feature: cfg.Feature, tft_output: tft.TFTransformOutput) -> int:
    """Number of distinct ids a categorical feature's output can take."""
    if feature.transform == "vocabulary":
        return tft_output.vocabulary_size_by_name(vocabulary_name(feature)) + feature.oov_buckets
    if feature.transform == "hashing":
        return feature.hash_buckets
    if feature.transform == "bucketize":
        return feature.num_buckets + 1
    raise ValueError(f"feature {feature.name}: {feature.transform} is not categorical")
