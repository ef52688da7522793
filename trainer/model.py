"""The two-tower retrieval model (TensorFlow Recommenders), built from the configs."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras

from trainer import config as cfg
from trainer import features as feats


class Tower(keras.Model):
    """Embeds a tower's transformed features and maps them to the shared embedding space.

    A tower of one categorical feature whose embedding already has the model's width and no
    hidden layers is a plain embedding table (the classic ID-only two-tower model).
    """

    def __init__(self, features: tuple[cfg.Feature, ...], cardinalities: dict[str, int],
                 model_config: cfg.ModelConfig, name: str):
        super().__init__(name=name)
        self.feature_names = [feats.transformed_name(f) for f in features]
        regularizer = keras.regularizers.l2(model_config.l2) if model_config.l2 else None
        self.embeddings = {}
        for f in features:
            key = feats.transformed_name(f)
            if f.transform in feats.CATEGORICAL:
                self.embeddings[key] = keras.layers.Embedding(
                    cardinalities[key], f.embedding_dim, embeddings_regularizer=regularizer,
                    name=f"{key}_embedding")
        # Keras tracks layers assigned as attributes; a dict of layers is tracked as well.
        self.hidden = [
            keras.layers.Dense(width, activation="relu", kernel_regularizer=regularizer)
            for width in model_config.tower_layers
        ]
        self.dropout = keras.layers.Dropout(model_config.dropout) if model_config.dropout else None
        direct = (len(features) == 1 and features[0].transform in feats.CATEGORICAL
                  and features[0].embedding_dim == model_config.embedding_dim
                  and not model_config.tower_layers)
        self.output_layer = None if direct else keras.layers.Dense(
            model_config.embedding_dim, kernel_regularizer=regularizer, name="projection")

    def call(self, inputs: dict, training: bool = False) -> tf.Tensor:
        parts = []
        for key in self.feature_names:
            value = inputs[key]
            if key in self.embeddings:
                parts.append(self.embeddings[key](value))
            else:
                parts.append(tf.reshape(tf.cast(value, tf.float32), [-1, 1]))
        x = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
        for layer in self.hidden:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return x if self.output_layer is None else self.output_layer(x)


class TwoTowerModel(tfrs.Model):
    """Buyer tower x product tower trained with in-batch softmax (tfrs.tasks.Retrieval)."""

    def __init__(self, feature_config: cfg.FeatureConfig, model_config: cfg.ModelConfig,
                 cardinalities: dict[str, int]):
        super().__init__()
        self.buyer_tower = Tower(feature_config.buyer, cardinalities, model_config, "buyer_tower")
        self.product_tower = Tower(feature_config.product, cardinalities, model_config,
                                   "product_tower")
        self.task = tfrs.tasks.Retrieval(temperature=model_config.temperature)

    def compute_loss(self, inputs: dict, training: bool = False) -> tf.Tensor:
        buyers = self.buyer_tower(inputs, training=training)
        products = self.product_tower(inputs, training=training)
        return self.task(buyers, products, compute_metrics=False, training=training)


def cardinalities(feature_config: cfg.FeatureConfig, tft_output: tft.TFTransformOutput) -> dict:
    """Embedding table sizes of every categorical feature of the config."""
    return {feats.transformed_name(f): feats.cardinality(f, tft_output)
            for f in feats.all_features(feature_config) if f.transform in feats.CATEGORICAL}


def make_optimizer(model_config: cfg.ModelConfig) -> keras.optimizers.Optimizer:
    """The configured optimizer."""
    rate = model_config.learning_rate
    if model_config.optimizer == "adagrad":
        return keras.optimizers.Adagrad(rate)
    if model_config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    return keras.optimizers.SGD(rate)
