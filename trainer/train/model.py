"""The two-tower retrieval model (TensorFlow Recommenders), built from the configs.

Each tower embeds its transformed features (id embeddings, averaged bags of ids for text and
purchase history, dense numeric and time features), concatenates them, runs the configured
layers and projects to the shared embedding space. Two residual paths keep what B2B demand
needs: the product tower adds its product-id embedding to its output, and the buyer tower adds
the mean embedding of the buyer's earlier products, looked up in that same shared table, so a
buyer's own past products score high from the first step.

With ``repurchase_scores`` the embeddings also get a sparse part over the product ids: the
buyer side holds a learned weight for each rank of its purchase history (most bought first),
the product side the one-hot of its id. Their inner product adds that weight to every product
the buyer bought before, so repeat demand, which dominates B2B, is scored exactly, and the
dense part is free to learn what else the buyer needs. Scores stay inner products, so the
exact index over the catalog still serves them. ``training.calibrate_repurchase`` scales the
sparse part after the fit by a factor chosen on validation (trainer/train/calibration.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras

from trainer import config as cfg
from trainer import contract
from trainer import features as feats

PRODUCT_KEY = feats.PRODUCT_KEY


class Tower(keras.Model):
    """Embeds a tower's transformed features and maps them to the shared embedding space.

    Args:
        features: The tower's features.
        cardinalities: Id-space size per transformed feature name (categorical and sequence).
        model_config: Widths, regularisation, output dimension.
        name: Layer name.
        shared: Embedding tables owned by the other tower, by transformed feature name.
        residual: Transformed feature name whose embedding is added to the output.
    """

    def __init__(
        self,
        features: tuple[cfg.Feature, ...],
        cardinalities: dict[str, int],
        model_config: cfg.ModelConfig,
        name: str,
        shared: dict | None = None,
        residual: str | None = None,
    ):
        super().__init__(name=name)
        shared = shared or {}
        self.specs = [(feats.transformed_name(f), f.transform) for f in features]
        regularizer = keras.regularizers.l2(model_config.l2) if model_config.l2 else None
        self.embeddings = {}
        for f in features:
            key = feats.transformed_name(f)
            if key in shared:
                self.embeddings[key] = shared[key]
            elif f.transform in feats.CATEGORICAL or f.transform in feats.SEQUENCE:
                self.embeddings[key] = keras.layers.Embedding(
                    cardinalities[key],
                    f.embedding_dim,
                    embeddings_regularizer=regularizer,
                    name=f"{key}_embedding",
                )
        self.hidden = [
            keras.layers.Dense(width, activation="relu", kernel_regularizer=regularizer)
            for width in model_config.tower_layers
        ]
        self.dropout = keras.layers.Dropout(model_config.dropout) if model_config.dropout else None
        self.residual = residual
        residual_dim = self.embeddings[residual].output_dim if residual else None
        # A lone id feature of the model's width is the classic ID-only tower: no projection.
        self.direct = (
            len(features) == 1
            and features[0].transform in feats.CATEGORICAL
            and features[0].embedding_dim == model_config.embedding_dim
            and not model_config.tower_layers
        )
        self.projection = (
            None
            if self.direct
            else keras.layers.Dense(
                model_config.embedding_dim, kernel_regularizer=regularizer, name="projection"
            )
        )
        self.residual_projection = None
        if residual and not self.direct and residual_dim != model_config.embedding_dim:
            self.residual_projection = keras.layers.Dense(
                model_config.embedding_dim, use_bias=False, name="residual"
            )

    def _part(self, key: str, transform: str, value: tf.Tensor) -> tf.Tensor:
        if transform in feats.SEQUENCE:
            mask = tf.cast(value != feats.PAD, tf.float32)[..., None]
            vectors = self.embeddings[key](tf.maximum(value, 0)) * mask
            return tf.math.divide_no_nan(tf.reduce_sum(vectors, 1), tf.reduce_sum(mask, 1))
        if key in self.embeddings:
            return self.embeddings[key](value)
        if transform == cfg.Transform.TIME:
            return tf.cast(value, tf.float32)
        return tf.reshape(tf.cast(value, tf.float32), [-1, 1])

    def call(self, inputs: dict, training: bool = False) -> tf.Tensor:
        """The tower's embedding of a batch of transformed features."""
        parts = {key: self._part(key, transform, inputs[key]) for key, transform in self.specs}
        if self.direct:
            return next(iter(parts.values()))
        x = tf.concat(list(parts.values()), axis=-1)
        for layer in self.hidden:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        out = self.projection(x)
        if self.residual:
            skip = parts[self.residual]
            out += self.residual_projection(skip) if self.residual_projection else skip
        return out


class TwoTowerModel(tfrs.Model):
    """Buyer tower x product tower trained with in-batch softmax (tfrs.tasks.Retrieval).

    Args:
        feature_config: Features of both towers.
        model_config: Architecture and loss options.
        cardinalities: Id-space size per transformed feature (see ``cardinalities``).
        sampling_probability: Per product id (in product_id's id space), the probability of
            being sampled as an in-batch candidate; needed for log-q correction.
    """

    def __init__(
        self,
        feature_config: cfg.FeatureConfig,
        model_config: cfg.ModelConfig,
        cardinalities: dict[str, int],
        sampling_probability: np.ndarray | None = None,
    ):
        super().__init__()
        product_has_more = len(feature_config.product) > 1
        self.product_tower = Tower(
            feature_config.product,
            cardinalities,
            model_config,
            "product_tower",
            residual=PRODUCT_KEY if product_has_more else None,
        )
        product_table = self.product_tower.embeddings[PRODUCT_KEY]
        history = [
            feats.transformed_name(f)
            for f in feature_config.buyer
            if f.transform == cfg.Transform.HISTORY
        ]
        self.buyer_tower = Tower(
            feature_config.buyer,
            cardinalities,
            model_config,
            "buyer_tower",
            shared={key: product_table for key in history},
            residual=history[0] if history else None,
        )
        self.history_key = history[0] if history else None
        # The sparse part scores the buyer's own history; without one there is nothing to score
        # and the model is the dense two-tower alone (train.py tags such a run).
        self.repurchase = model_config.repurchase_scores and bool(history)
        if self.repurchase:
            length = next(
                f.max_length for f in feature_config.buyer if f.transform == cfg.Transform.HISTORY
            )
            self.rank_weights = self.add_weight(
                name="repurchase_rank_weights",
                shape=(length,),
                initializer=keras.initializers.Constant(1.0),
            )
        self.logq = model_config.logq_correction
        self.remove_accidental_hits = model_config.remove_accidental_hits
        if self.logq and sampling_probability is None:
            raise ValueError("logq_correction needs the products' sampling probabilities")
        self.sampling_probability = (
            tf.constant(sampling_probability, tf.float32) if self.logq else None
        )
        self.task = tfrs.tasks.Retrieval(
            temperature=model_config.temperature, remove_accidental_hits=self.remove_accidental_hits
        )

    def repurchase_bonus(self, inputs: dict, candidate_ids: tf.Tensor) -> tf.Tensor:
        """[queries, candidates]: the sparse part of the score (0 when it is off).

        The join of history ids with candidate ids (``sparse_repurchase_bonus``), whose cost
        does not depend on the catalog: in training the candidates are the batch's products,
        and no [batch x catalog] tensor is built. Scoring the whole catalog (serving,
        evaluation) takes the same join: there it was 2.6x-3x faster than a scatter over the
        id space followed by a column gather, for the same peak memory (bench/RESULTS.md).
        """
        return sparse_repurchase_bonus(inputs[self.history_key], self.rank_weights, candidate_ids)

    def scale_repurchase(self, factor: float) -> None:
        """Multiplies the rank weights (so every repurchase bonus) by ``factor``."""
        self.rank_weights.assign(self.rank_weights * factor)

    def scores(
        self, inputs: dict, candidates: tf.Tensor, candidate_ids: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
        """Scores of queries (transformed buyer features) against candidate embeddings."""
        return self.candidate_scores(
            self.buyer_tower(inputs, training=training), inputs, candidates, candidate_ids
        )

    def candidate_scores(
        self, buyers: tf.Tensor, inputs: dict, candidates: tf.Tensor, candidate_ids: tf.Tensor
    ) -> tf.Tensor:
        """``scores`` given the buyer-tower output: what a catalog search runs per chunk.

        Args:
            buyers: [queries, dim] buyer-tower embeddings of ``inputs`` (computed once).
            inputs: The queries' transformed features (the history for the sparse part).
            candidates: [candidates, dim] product embeddings.
            candidate_ids: [candidates] their product ids.
        """
        out = tf.matmul(buyers, candidates, transpose_b=True)
        if self.repurchase:
            out += self.repurchase_bonus(inputs, candidate_ids)
        return out

    def compute_loss(self, inputs: dict, training: bool = False) -> tf.Tensor:
        """In-batch softmax loss (with the sparse part, log-q and accidental hits as configured)."""
        products = self.product_tower(inputs, training=training)
        ids = inputs[PRODUCT_KEY]
        probability = tf.gather(self.sampling_probability, ids) if self.logq else None
        hit_ids = ids if self.remove_accidental_hits else None
        if not self.repurchase:
            buyers = self.buyer_tower(inputs, training=training)
            return self.task(
                buyers,
                products,
                compute_metrics=False,
                candidate_sampling_probability=probability,
                candidate_ids=hit_ids,
            )
        # The same in-batch softmax as tfrs.tasks.Retrieval, on scores with the sparse part.
        scores = self.scores(inputs, products, ids, training=training) / self.task._temperature
        labels = tf.eye(tf.shape(scores)[0], tf.shape(scores)[1])
        if probability is not None:
            scores = tfrs.layers.loss.SamplingProbablityCorrection()(scores, probability)
        if hit_ids is not None:
            scores = tfrs.layers.loss.RemoveAccidentalHits()(labels, scores, hit_ids)
        return self.task._loss(y_true=labels, y_pred=scores)


def sparse_repurchase_bonus(
    history: tf.Tensor, rank_weights: tf.Tensor, candidate_ids: tf.Tensor
) -> tf.Tensor:
    """Per candidate, the summed rank weights of its id in each history: a join of the ids.

    Each history id is looked up among the sorted candidate ids (binary search); the matches
    are scattered into [candidates, queries] at the first sorted position of their id, each
    candidate takes the row of its own id's first position (so duplicate candidate ids get the
    same value), and the result is transposed. Cost O(queries x (length x log(candidates) +
    candidates)), whatever the size of the id space. Rows, not columns: gathering rows (and
    summing the gradient back into rows) copies contiguous memory; for a 4096 x 4096 batch on
    CPU, forward and gradient took 0.16-0.24 s this way against 0.32-0.33 s with a column
    gather (whose gradient transposes twice).

    Args:
        history: [queries, length] product ids, most bought first, padded with PAD.
        rank_weights: [length] weight of each history rank.
        candidate_ids: [candidates] product ids (non-negative).

    Returns:
        [queries, candidates]: per candidate, the summed rank weights of its id in the history.
    """
    candidate_ids = tf.cast(candidate_ids, history.dtype)
    batch, length = tf.shape(history)[0], tf.shape(history)[1]
    count = tf.shape(candidate_ids)[0]
    sorted_ids = tf.sort(candidate_ids)
    flat = tf.reshape(history, [-1])
    position = tf.searchsorted(sorted_ids, flat, side="left", out_type=tf.int64)
    # A history id above every candidate gets position ``count``: PAD stands there, which no
    # valid id equals (this also covers an empty candidate set).
    padded = tf.concat([sorted_ids, tf.constant([feats.PAD], history.dtype)], 0)
    found = (tf.gather(padded, position) == flat) & (flat != feats.PAD)
    matched = tf.where(found)[:, 0]
    rows = matched // tf.cast(length, tf.int64)
    indices = tf.stack([tf.gather(position, matched), rows], 1)
    # Gathered from the broadcast weights, not from rank_weights itself, so that rank_weights
    # gets a dense gradient as with the dense formula (an IndexedSlices one would take the
    # optimizers' sparse update paths).
    per_entry = tf.reshape(tf.broadcast_to(rank_weights, tf.shape(history)), [-1])
    weights = tf.gather(per_entry, matched)
    by_position = tf.scatter_nd(
        indices, weights, tf.cast(tf.stack([tf.maximum(count, 1), batch]), tf.int64)
    )
    columns = tf.searchsorted(sorted_ids, candidate_ids, side="left", out_type=tf.int64)
    return tf.transpose(tf.gather(by_position, columns))


def cardinalities(feature_config: cfg.FeatureConfig, tft_output: tft.TFTransformOutput) -> dict:
    """Id-space size of every feature that is looked up in an embedding table."""
    product = next(f for f in feature_config.product if f.name == contract.PRODUCT_ID)
    out = {}
    for f in feats.all_features(feature_config):
        if f.transform == cfg.Transform.HISTORY:
            out[feats.transformed_name(f)] = feats.cardinality(product, tft_output)
        elif f.transform in feats.CATEGORICAL or f.transform in feats.SEQUENCE:
            out[feats.transformed_name(f)] = feats.cardinality(f, tft_output)
    return out


def sampling_probability(
    vocabulary: list, oov_buckets: int, train_counts: dict[str, int]
) -> np.ndarray:
    """Per product id: its share of train interactions (the in-batch sampling probability).

    Args:
        vocabulary: product_id's vocabulary, in id order (bytes or str).
        oov_buckets: OOV ids that follow the vocabulary.
        train_counts: Train interactions per product id.

    Ids without interactions (OOV buckets) get the smallest observed probability.
    """
    counts = np.array(
        [train_counts.get(v.decode() if isinstance(v, bytes) else v, 0) for v in vocabulary],
        np.float64,
    )
    counts = np.concatenate([counts, np.zeros(oov_buckets)])
    floor = counts[counts > 0].min() if (counts > 0).any() else 1.0
    counts = np.maximum(counts, floor)
    return (counts / counts.sum()).astype(np.float32)


def make_optimizer(
    model_config: cfg.ModelConfig, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    """The configured optimizer with its learning-rate schedule."""
    rate = model_config.learning_rate
    steps = max(1, steps_per_epoch)
    schedules = {
        cfg.LrSchedule.CONSTANT: lambda: rate,
        cfg.LrSchedule.COSINE: lambda: keras.optimizers.schedules.CosineDecay(
            rate, max(1, steps_per_epoch * epochs)
        ),
        cfg.LrSchedule.EXPONENTIAL: lambda: keras.optimizers.schedules.ExponentialDecay(
            rate, steps, model_config.lr_decay_rate
        ),
    }
    optimizers = {
        cfg.Optimizer.ADAGRAD: keras.optimizers.Adagrad,
        cfg.Optimizer.ADAM: keras.optimizers.Adam,
        cfg.Optimizer.SGD: keras.optimizers.SGD,
    }
    for field, value, known in (
        ("lr_schedule", model_config.lr_schedule, schedules),
        ("optimizer", model_config.optimizer, optimizers),
    ):
        if value not in known:  # a config built in code, past the YAML checks
            raise ValueError(f"model config {model_config.id!r}: unknown {field} {value!r}")
    return optimizers[model_config.optimizer](schedules[model_config.lr_schedule]())
