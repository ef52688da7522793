"""Two-tower model pieces on hand-built tensors: residual towers, repurchase scores, log-q."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import config as cfg
from trainer import contract
from trainer.train import model as model_lib

FC = cfg.FeatureConfig(
    id="h",
    name="h",
    buyer=(
        cfg.Feature(contract.BUYER_ID, "vocabulary", embedding_dim=4),
        cfg.Feature(contract.HISTORY, "history", max_length=3),
        cfg.Feature(contract.MONETARY, "log"),
    ),
    product=(
        cfg.Feature(contract.PRODUCT_ID, "vocabulary", embedding_dim=8),
        cfg.Feature(contract.DESCRIPTION, "text", embedding_dim=4, max_length=2),
    ),
)
CARD = {
    "buyer_id__vocabulary": 3,
    "history__history": 6,
    "product_id__vocabulary": 6,
    "description__text": 5,
}
INPUTS = {
    "buyer_id__vocabulary": tf.constant([0, 1], tf.int64),
    "history__history": tf.constant([[2, 4, -1], [-1, -1, -1]], tf.int64),
    "monetary__log": tf.constant([0.5, -1.0]),
    "product_id__vocabulary": tf.constant([2, 3], tf.int64),
    "description__text": tf.constant([[1, -1], [0, 3]], tf.int64),
}


def _model(**overrides):
    mc = cfg.ModelConfig(id="m", name="m", embedding_dim=8, **overrides)
    return model_lib.TwoTowerModel(FC, mc, CARD, sampling_probability=np.full(6, 1 / 6, np.float32))


def test_history_shares_the_product_embedding_table():
    model = _model()
    assert (
        model.buyer_tower.embeddings["history__history"]
        is model.product_tower.embeddings["product_id__vocabulary"]
    )


def test_buyer_without_history_gets_a_zero_history_part():
    model = _model()
    part = model.buyer_tower._part("history__history", "history", INPUTS["history__history"])
    table = model.product_tower.embeddings["product_id__vocabulary"].embeddings.numpy()
    np.testing.assert_allclose(part[0], (table[2] + table[4]) / 2, rtol=1e-6)
    np.testing.assert_allclose(part[1], 0.0)


def test_repurchase_bonus_is_the_rank_weight_of_each_bought_product():
    model = _model(repurchase_scores=True)
    model.rank_weights.assign([3.0, 2.0, 1.0])
    bonus = model.repurchase_bonus(INPUTS, tf.constant([4, 2, 0], tf.int64)).numpy()
    np.testing.assert_allclose(bonus, [[2.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    # Scores are the dense inner product plus the bonus.
    candidates = tf.random.stateless_normal([3, 8], seed=[1, 2])
    scores = model.scores(INPUTS, candidates, tf.constant([4, 2, 0], tf.int64)).numpy()
    dense = model.buyer_tower(INPUTS).numpy() @ candidates.numpy().T
    np.testing.assert_allclose(scores, dense + bonus, rtol=1e-5, atol=1e-5)


def test_repurchase_without_a_history_feature_leaves_the_dense_model():
    fc = cfg.FeatureConfig(
        id="ids",
        name="ids",
        buyer=(cfg.Feature(contract.BUYER_ID, "vocabulary"),),
        product=(cfg.Feature(contract.PRODUCT_ID, "vocabulary"),),
    )
    mc = cfg.ModelConfig(id="m", name="m", embedding_dim=32, repurchase_scores=True)
    model = model_lib.TwoTowerModel(
        fc, mc, {"buyer_id__vocabulary": 2, "product_id__vocabulary": 2}
    )
    assert not model.repurchase and not hasattr(model, "rank_weights")
    inputs = {
        "buyer_id__vocabulary": tf.constant([0, 1], tf.int64),
        "product_id__vocabulary": tf.constant([1, 0], tf.int64),
    }
    candidates = tf.random.stateless_normal([2, 32], seed=[1, 2])
    scores = model.scores(inputs, candidates, tf.constant([1, 0], tf.int64)).numpy()
    dense = model.buyer_tower(inputs).numpy() @ candidates.numpy().T
    np.testing.assert_allclose(scores, dense, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "repurchase_scores": True,
            "logq_correction": True,
            "remove_accidental_hits": True,
            "temperature": 0.5,
        },
    ],
)
def test_loss_is_finite_and_trains(options):
    model = _model(**options)
    model.compile(optimizer=model_lib.make_optimizer(model_lib_config(**options), 1, 1))
    before = float(model.compute_loss(INPUTS))
    for _ in range(20):
        model.train_step(INPUTS)
    after = float(model.compute_loss(INPUTS))
    assert np.isfinite(before) and after < before


def model_lib_config(**options):
    return cfg.ModelConfig(id="m", name="m", optimizer="adam", learning_rate=0.05, **options)


def test_sampling_probability_is_the_train_share_with_a_floor_for_oov():
    probability = model_lib.sampling_probability(
        [b"p1", b"p2", "p3"], 1, {"p1": 6, "p2": 3, "p3": 0}
    )
    np.testing.assert_allclose(probability, np.array([6, 3, 3, 3]) / 15, rtol=1e-6)


def test_repurchase_bonus_for_the_catalog_and_for_a_batch():
    model = _model(repurchase_scores=True)
    model.rank_weights.assign([3.0, 2.0, 1.0])
    traced = tf.function(
        lambda ids: model.repurchase_bonus(INPUTS, ids),
        input_signature=[tf.TensorSpec([None], tf.int64)],
    )
    # Eager and traced with the shapes unknown (training), the whole catalog and a batch.
    for ids, want in (
        ([5, 4, 3, 2, 1, 0], [[0.0, 2.0, 0.0, 3.0, 0.0, 0.0], [0.0] * 6]),
        ([4, 3], [[2.0, 0.0], [0.0, 0.0]]),
    ):
        ids = tf.constant(ids, tf.int64)
        np.testing.assert_allclose(model.repurchase_bonus(INPUTS, ids), want)
        np.testing.assert_allclose(traced(ids), want)


def test_candidate_scores_per_chunk_equal_the_whole_catalog_scores():
    model = _model(repurchase_scores=True)
    model.rank_weights.assign([3.0, 2.0, 1.0])
    candidates = tf.random.stateless_normal([5, 8], seed=[3, 4])
    ids = tf.constant([4, 2, 0, 1, 3], tf.int64)
    whole = model.scores(INPUTS, candidates, ids).numpy()
    buyers = model.buyer_tower(INPUTS)  # computed once, reused by every chunk
    parts = [
        model.candidate_scores(buyers, INPUTS, candidates[a:b], ids[a:b]).numpy()
        for a, b in ((0, 2), (2, 4), (4, 5))
    ]
    np.testing.assert_allclose(np.concatenate(parts, 1), whole, rtol=1e-6, atol=1e-6)
