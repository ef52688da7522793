"""Feature transforms: the tf.Transform ``preprocessing_fn`` generated from a feature config.

The same ``Feature`` entries drive the towers (trainer/train/model.py), so the names of the
transformed features and their sizes are defined here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import tensorflow as tf
import tensorflow_transform as tft

from trainer import config as cfg
from trainer import contract

# Transforms whose output is an integer id looked up in an embedding table.
CATEGORICAL = (
    cfg.Transform.VOCABULARY,
    cfg.Transform.HASHING,
    cfg.Transform.BUCKETIZE,
    cfg.Transform.CROSS,
)
# Transforms whose output is a fixed-length list of ids padded with PAD (a bag to average).
SEQUENCE = (cfg.Transform.TEXT, cfg.Transform.HISTORY)
PAD = -1
_DAY = 86400.0


def transformed_name(feature: cfg.Feature) -> str:
    """Name of a feature's output in the transformed examples."""
    return f"{feature.name}__{feature.transform}"


# Where the product ids are in the transformed examples: every feature config has product_id
# with transform vocabulary (the config checks it), and both towers and serving read it.
PRODUCT_KEY = transformed_name(cfg.Feature(contract.PRODUCT_ID, cfg.Transform.VOCABULARY))


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


def _threshold(feature: cfg.Feature) -> int | None:
    return feature.min_frequency if feature.min_frequency > 1 else None


def _pad(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    return ids.to_tensor(default_value=PAD, shape=[None, length])


def tokenize(text: tf.Tensor, max_length: int) -> tf.RaggedTensor:
    """Lower-cased alphanumeric tokens of each string, the first ``max_length`` kept."""
    cleaned = tf.strings.regex_replace(tf.strings.lower(text), r"[^a-z0-9]+", " ")
    return tf.strings.split(tf.strings.strip(cleaned))[:, :max_length]


def time_features(seconds: tf.Tensor) -> tf.Tensor:
    """Cyclical hour / weekday / season encodings and a z-scored recency (days), [N, 7]."""
    t = tf.cast(seconds, tf.float64)
    days = t / _DAY
    cycles = [
        tf.math.floormod(t, _DAY) / _DAY,  # time of day
        tf.math.floormod(tf.math.floor(days) + 3.0, 7.0) / 7.0,  # weekday (1970-01-01: Thu)
        tf.math.floormod(days, 365.2425) / 365.2425,  # season
    ]
    parts = []
    for phase in cycles:
        angle = 2.0 * 3.141592653589793 * phase
        parts += [tf.sin(angle), tf.cos(angle)]
    parts.append(tft.scale_to_z_score(days))
    return tf.cast(tf.stack(parts, axis=1), tf.float32)


def _transform(
    feature: cfg.Feature, x: tf.Tensor, inputs: dict, vocabularies: dict, product: cfg.Feature
) -> tf.Tensor:
    if feature.transform == cfg.Transform.VOCABULARY:
        return tft.apply_vocabulary(
            x, vocabularies[feature.name], num_oov_buckets=feature.oov_buckets
        )
    if feature.transform == cfg.Transform.HISTORY:
        # Ids in product_id's vocabulary, so the buyer tower can share its embedding table.
        tokens = tf.strings.split(x)[:, : feature.max_length]
        ids = tft.apply_vocabulary(
            tokens, vocabularies[contract.PRODUCT_ID], num_oov_buckets=product.oov_buckets
        )
        return _pad(ids, feature.max_length)
    if feature.transform == cfg.Transform.TEXT:
        tokens = tokenize(x, feature.max_length)
        ids = tft.compute_and_apply_vocabulary(
            tokens,
            top_k=feature.vocab_size,
            frequency_threshold=_threshold(feature),
            num_oov_buckets=feature.oov_buckets,
            vocab_filename=vocabulary_name(feature),
        )
        return _pad(ids, feature.max_length)
    if feature.transform == cfg.Transform.HASHING:
        return tft.hash_strings(x, feature.hash_buckets)
    if feature.transform == cfg.Transform.CROSS:
        return tft.hash_strings(
            tf.strings.join([x, inputs[feature.cross_with]], "\x1f"), feature.hash_buckets
        )
    if feature.transform == cfg.Transform.TIME:
        return time_features(x)
    x = tf.cast(x, tf.float32)
    if feature.transform == cfg.Transform.BUCKETIZE:
        return tft.bucketize(x, feature.num_buckets)
    if feature.transform == cfg.Transform.ZSCORE:
        return tft.scale_to_z_score(x)
    if feature.transform == cfg.Transform.LOG:
        return tft.scale_to_z_score(tf.math.log1p(tf.maximum(x, 0.0)))
    raise ValueError(f"feature {feature.name}: unknown transform {feature.transform!r}")


def make_preprocessing_fn(feature_config: cfg.FeatureConfig) -> Callable[[dict], dict]:
    """The ``preprocessing_fn`` for tf.Transform built from one feature config."""
    features = all_features(feature_config)
    product_vocabulary = next(
        f
        for f in feature_config.product
        if f.name == contract.PRODUCT_ID and f.transform == cfg.Transform.VOCABULARY
    )

    def preprocessing_fn(inputs: dict) -> dict:
        # Vocabularies first: the history feature looks its products up in product_id's.
        vocabularies = {}
        for f in features:
            if f.transform == cfg.Transform.VOCABULARY:
                vocabularies[f.name] = tft.vocabulary(
                    inputs[f.name],
                    frequency_threshold=_threshold(f),
                    vocab_filename=vocabulary_name(f),
                )
        if any(f.transform == cfg.Transform.HISTORY for f in features):
            vocabularies.setdefault(
                contract.PRODUCT_ID,
                tft.vocabulary(
                    inputs[contract.PRODUCT_ID],
                    frequency_threshold=_threshold(product_vocabulary),
                    vocab_filename=vocabulary_name(product_vocabulary),
                ),
            )
        return {
            transformed_name(f): _transform(
                f, inputs[f.name], inputs, vocabularies, product_vocabulary
            )
            for f in features
        }

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
    if feature.transform in (cfg.Transform.VOCABULARY, cfg.Transform.TEXT):
        return tft_output.vocabulary_size_by_name(vocabulary_name(feature)) + feature.oov_buckets
    if feature.transform in (cfg.Transform.HASHING, cfg.Transform.CROSS):
        return feature.hash_buckets
    if feature.transform == cfg.Transform.BUCKETIZE:
        return feature.num_buckets + 1
    raise ValueError(f"feature {feature.name}: {feature.transform} has no id space of its own")
