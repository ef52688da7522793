"""Serving: exact top-k over the catalog, the exported SavedModel, and querying it.

The exported model takes raw buyer features (the columns the buyer tower reads), runs the
transform graph and the buyer tower once, and scores the whole catalog exactly, in chunks with
a running top-k (``trainer/retrieval/topk.py``) so memory does not grow with the catalog; training's
validation recall and the evaluate step use the same catalog search, in process and through
the exported signature respectively. Ties go to the lower catalog row on both paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import config as cfg
from trainer import contract, features, inputs, retrieval


class Towers(Protocol):
    """What serving needs of a trained model (``trainer.train.TwoTowerModel``): its towers.

    Only a type: exporting and loading need no model code, so serving sits below training.
    """

    buyer_tower: Callable  # transformed buyer features -> buyer embeddings
    product_tower: Callable  # transformed product features -> product embeddings

    def candidate_scores(  # noqa: D102  (documented on TwoTowerModel)
        self, buyers: tf.Tensor, inputs: dict, candidates: tf.Tensor, candidate_ids: tf.Tensor
    ) -> tf.Tensor: ...


def embed_catalog(
    two_tower: Towers, tft_layer, catalog: pd.DataFrame, batch_size: int = 8192
) -> tuple[tf.Tensor, tf.Tensor]:
    """Product-tower embeddings of the catalog and its product ids (in the vocabulary's space)."""
    embeddings, ids = [], []
    for start in range(0, len(catalog), batch_size):
        transformed = tft_layer(inputs.raw_tensors(catalog.iloc[start : start + batch_size]))
        embeddings.append(two_tower.product_tower(transformed, training=False))
        ids.append(transformed[features.PRODUCT_KEY])
    return tf.concat(embeddings, 0), tf.concat(ids, 0)


def seen_pairs(histories, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(query, catalog row) of every catalog product in each query's history string.

    Args:
        histories: Per query, the ``history`` column (space-joined product ids).
        index: Catalog row per product id; products outside the catalog are skipped.
    """
    queries, rows = [], []
    for i, text in enumerate(histories):
        found = [index[p] for p in str(text).split() if p in index]
        queries += [i] * len(found)
        rows += found
    return np.asarray(queries, np.int64), np.asarray(rows, np.int64)


def top_k_for_queries(
    two_tower: Towers,
    tft_layer,
    queries: pd.DataFrame,
    candidates: tf.Tensor,
    candidate_ids: tf.Tensor,
    k: int,
    batch_size: int = 1024,
    chunk: int = retrieval.DEFAULT_CHUNK,
    seen_index: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k catalog rows (and scores) of raw query rows, best first, ties by row.

    The buyer tower runs once per query batch; the catalog is scored ``chunk`` rows at a time
    with a running top-k (``retrieval.chunked_top_k``), so memory is one [batch x chunk] block.

    Args:
        two_tower: The model.
        tft_layer: The transform graph as a layer.
        queries: Raw query rows.
        candidates: [catalog, dim] product embeddings (``embed_catalog``).
        candidate_ids: [catalog] their product ids.
        k: How many per query.
        batch_size: Queries per batch.
        chunk: Catalog rows per block.
        seen_index: With ``training.exclude_seen``: the catalog row per product id; each
            query's ``history`` products are then excluded (row -1 where fewer than k remain).
    """
    k = min(k, int(candidates.shape[0]))
    rows, values = [], []
    for start in range(0, len(queries), batch_size):
        batch = queries.iloc[start : start + batch_size]
        transformed = tft_layer(inputs.raw_tensors(batch))
        buyers = two_tower.buyer_tower(transformed, training=False)

        def score(a: int, b: int, transformed=transformed, buyers=buyers) -> np.ndarray:
            return two_tower.candidate_scores(
                buyers, transformed, candidates[a:b], candidate_ids[a:b]
            ).numpy()

        if seen_index is not None:
            pairs = seen_pairs(batch[contract.HISTORY].to_numpy(), seen_index)
            unmasked = score

            def score(a: int, b: int, unmasked=unmasked, pairs=pairs) -> np.ndarray:
                return retrieval.mask_seen(unmasked(a, b), a, *pairs)

        top, top_scores = retrieval.chunked_top_k(score, int(candidates.shape[0]), k, chunk)
        rows.append(retrieval.drop_masked(top, top_scores) if seen_index is not None else top)
        values.append(top_scores)
    return np.concatenate(rows), np.concatenate(values)


class ServingModel(tf.Module):
    """Raw buyer features in, top-K product ids and scores out (exact search over the catalog).

    The transform graph and the buyer tower run once per request; the catalog is scored in
    chunks with a running top-k (``retrieval.chunked_top_k_tf``), so memory per request is one
    [queries x chunk] block whatever the catalog (bench/RESULTS.md: the top-k over 1M
    products took ~170 MiB per 1,000 queries). With ``exclude_seen`` the signature also takes
    ``history`` (the buyer's earlier products, space-joined, any length: the tower reads its
    first ``max_length``, the mask all of it) and never returns those products: a slot left
    without a product (fewer than K others) has product id "" and score -inf.
    """

    def __init__(
        self,
        tft_layer,
        two_tower: Towers,
        product_ids: np.ndarray,
        product_embeddings: tf.Tensor,
        product_vocab_ids: tf.Tensor,
        buyer_columns: list[str],
        k: int = contract.SERVING_K,
        chunk: int = retrieval.DEFAULT_CHUNK,
        exclude_seen: bool = False,
    ):
        super().__init__()
        self.tft_layer = tft_layer
        self.two_tower = two_tower
        self.product_ids = tf.constant(product_ids.astype(object), dtype=tf.string)
        self.product_embeddings = tf.Variable(product_embeddings, trainable=False)
        self.product_vocab_ids = tf.Variable(product_vocab_ids, trainable=False)
        self.k = min(k, len(product_ids))
        self.chunk = max(chunk, self.k)  # the running top-k needs k <= chunk
        self.exclude_seen = exclude_seen
        if exclude_seen:
            self.catalog_rows = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    self.product_ids, tf.range(len(product_ids), dtype=tf.int64)
                ),
                default_value=-1,
            )
        self.buyer_columns = buyer_columns
        self.serve = tf.function(self._serve, input_signature=[inputs.raw_specs(buyer_columns)])

    def _seen(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        tokens = tf.strings.split(history)
        rows = self.catalog_rows.lookup(tokens.flat_values)
        known = rows >= 0
        return tf.boolean_mask(tokens.value_rowids(), known), tf.boolean_mask(rows, known)

    def _serve(self, features: dict) -> dict:
        batch = tf.shape(next(iter(features.values())))[0]
        raw = {}
        for name, kind in contract.RAW_COLUMN_TYPES.items():
            if name in features:
                raw[name] = features[name]
            else:
                neutral = tf.constant(inputs.NEUTRAL_VALUES[kind], inputs.raw_dtype(name))
                raw[name] = tf.fill([batch], neutral)
        transformed = self.tft_layer(raw)
        buyers = self.two_tower.buyer_tower(transformed, training=False)
        seen = self._seen(raw[contract.HISTORY]) if self.exclude_seen else None

        def score(start, stop):
            out = self.two_tower.candidate_scores(
                buyers,
                transformed,
                self.product_embeddings[start:stop],
                self.product_vocab_ids[start:stop],
            )
            return retrieval.mask_seen_tf(out, start, *seen) if seen is not None else out

        values, indices = retrieval.chunked_top_k_tf(
            score, tf.shape(self.product_ids)[0], self.k, self.chunk
        )
        ids = tf.gather(self.product_ids, indices)
        if self.exclude_seen:
            ids = tf.where(values == -float("inf"), tf.constant(""), ids)
        return {"product_ids": ids, "scores": values}


def serving_columns(feature_config: cfg.FeatureConfig, exclude_seen: bool = False) -> list[str]:
    """Raw columns the serving signature takes: every column the buyer tower reads.

    With ``exclude_seen`` the history column too, whether or not the tower reads it: it is
    what the products to exclude are read from.
    """
    names = {f.name for f in feature_config.buyer}
    names |= {f.cross_with for f in feature_config.buyer if f.cross_with}
    if exclude_seen:
        names.add(contract.HISTORY)
    return sorted(names)


def export_serving_model(
    path: str,
    two_tower: Towers,
    tft_output,
    catalog: pd.DataFrame,
    feature_config: cfg.FeatureConfig,
    exclude_seen: bool = False,
    chunk: int = retrieval.DEFAULT_CHUNK,
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
        serving_columns(feature_config, exclude_seen),
        chunk=chunk,
        exclude_seen=exclude_seen,
    )
    if tf.io.gfile.exists(path):  # what a killed attempt had half written
        tf.io.gfile.rmtree(path)
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
