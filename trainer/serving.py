"""Serving: exact top-k over the catalog, the exported SavedModel, and querying it.

The exported model takes raw buyer features (the columns the buyer tower reads), runs the
transform graph and the buyer tower, and scores the whole catalog exactly; training's
validation recall and the evaluate step use the same catalog search, in process and through
the exported signature respectively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import config as cfg
from trainer import contract, features, inputs, retrieval_metrics

if TYPE_CHECKING:  # the model class is only a type here: loading a model needs no model code
    from trainer.model import TwoTowerModel


def embed_catalog(
    two_tower: TwoTowerModel, tft_layer, catalog: pd.DataFrame, batch_size: int = 8192
) -> tuple[tf.Tensor, tf.Tensor]:
    """Product-tower embeddings of the catalog and its product ids (in the vocabulary's space)."""
    embeddings, ids = [], []
    for start in range(0, len(catalog), batch_size):
        transformed = tft_layer(inputs.raw_tensors(catalog.iloc[start : start + batch_size]))
        embeddings.append(two_tower.product_tower(transformed, training=False))
        ids.append(transformed[features.PRODUCT_KEY])
    return tf.concat(embeddings, 0), tf.concat(ids, 0)


def top_k_for_queries(
    two_tower: TwoTowerModel,
    tft_layer,
    queries: pd.DataFrame,
    candidates: tf.Tensor,
    candidate_ids: tf.Tensor,
    k: int,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k catalog rows (and scores) of raw query rows, best first."""
    k = min(k, int(candidates.shape[0]))
    rows, values = [], []
    for start in range(0, len(queries), batch_size):
        transformed = tft_layer(inputs.raw_tensors(queries.iloc[start : start + batch_size]))
        scores = two_tower.scores(transformed, candidates, candidate_ids).numpy()
        top, top_scores = retrieval_metrics.top_k_rows(scores, k)
        rows.append(top)
        values.append(top_scores)
    return np.concatenate(rows), np.concatenate(values)


class ServingModel(tf.Module):
    """Raw buyer features in, top-K product ids and scores out (exact search over the catalog)."""

    def __init__(
        self,
        tft_layer,
        two_tower: TwoTowerModel,
        product_ids: np.ndarray,
        product_embeddings: tf.Tensor,
        product_vocab_ids: tf.Tensor,
        buyer_columns: list[str],
        k: int = contract.SERVING_K,
    ):
        super().__init__()
        self.tft_layer = tft_layer
        self.two_tower = two_tower
        self.product_ids = tf.constant(product_ids.astype(object), dtype=tf.string)
        self.product_embeddings = tf.Variable(product_embeddings, trainable=False)
        self.product_vocab_ids = tf.Variable(product_vocab_ids, trainable=False)
        self.k = min(k, len(product_ids))
        self.buyer_columns = buyer_columns
        self.serve = tf.function(self._serve, input_signature=[inputs.raw_specs(buyer_columns)])

    def _serve(self, features: dict) -> dict:
        batch = tf.shape(next(iter(features.values())))[0]
        raw = {}
        for name, kind in contract.RAW_COLUMN_TYPES.items():
            if name in features:
                raw[name] = features[name]
            else:
                neutral = tf.constant(inputs.NEUTRAL_VALUES[kind], inputs.raw_dtype(name))
                raw[name] = tf.fill([batch], neutral)
        scores = self.two_tower.scores(
            self.tft_layer(raw), self.product_embeddings, self.product_vocab_ids
        )
        top = tf.math.top_k(scores, k=self.k)
        return {"product_ids": tf.gather(self.product_ids, top.indices), "scores": top.values}


def serving_columns(feature_config: cfg.FeatureConfig) -> list[str]:
    """Raw columns the serving signature takes: every column the buyer tower reads."""
    names = {f.name for f in feature_config.buyer}
    names |= {f.cross_with for f in feature_config.buyer if f.cross_with}
    return sorted(names)


def export_serving_model(
    path: str,
    two_tower: TwoTowerModel,
    tft_output,
    catalog: pd.DataFrame,
    feature_config: cfg.FeatureConfig,
) -> str:
    """Saves the serving SavedModel (signature ``serving_default``) and returns its path."""
    tft_layer = tft_output.transform_features_layer()
    embeddings, vocab_ids = embed_catalog(two_tower, tft_layer, catalog)
    module = ServingModel(
        tft_layer,
        two_tower,
        catalog[contract.PRODUCT_ID].to_numpy(),
        embeddings,
        vocab_ids,
        serving_columns(feature_config),
    )
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def load_serving_model(serving_dir: str):
    """Loads the exported model; returns its ``serving_default`` function."""
    return tf.saved_model.load(serving_dir).signatures["serving_default"]


def serve_top_k(
    serve, queries: pd.DataFrame, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the serving signature over raw query rows: (product ids, scores), best first."""
    names = list(serve.structured_input_signature[1].keys())
    ids, scores = [], []
    for start in range(0, len(queries), batch_size):
        out = serve(**inputs.raw_tensors(queries.iloc[start : start + batch_size], names))
        ids.append(out["product_ids"].numpy().astype(str))
        scores.append(out["scores"].numpy())
    return np.concatenate(ids), np.concatenate(scores)
