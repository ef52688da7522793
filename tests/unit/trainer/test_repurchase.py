"""trainer/train/model.py's repurchase bonus: the candidate join against the dense formula it replaced."""

import numpy as np
import pytest
import tensorflow as tf

from trainer import features
from trainer.train import model as model_lib


def reference_bonus(history, rank_weights, candidate_ids, num_products):
    """The formula of ``TwoTowerModel.repurchase_bonus`` before the join (commit ba1f252)."""
    batch, length = tf.shape(history)[0], tf.shape(history)[1]
    valid = history != features.PAD
    rows = tf.repeat(tf.range(batch, dtype=history.dtype)[:, None], length, axis=1)
    indices = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(history, valid)], 1)
    weights = tf.boolean_mask(tf.broadcast_to(rank_weights, tf.shape(history)), valid)
    dense = tf.scatter_nd(
        indices,
        weights,
        tf.stack([tf.cast(batch, tf.int64), tf.constant(num_products, tf.int64)]),
    )
    return tf.gather(dense, candidate_ids, axis=1)


def random_case(seed, batch=7, length=5, num_products=12, candidates=9):
    """History with PAD tails and repeated ids; candidates with duplicates; absent ids."""
    rng = np.random.default_rng(seed)
    history = rng.integers(0, num_products, size=(batch, length))
    pad_from = rng.integers(0, length + 1, size=batch)  # 0: a buyer without history
    history[np.arange(length)[None, :] >= pad_from[:, None]] = features.PAD
    history[0, :2] = [3, 3]  # the same id twice in one history: both weights count
    # Candidates from the lower half of the id space (some history ids are never candidates),
    # with at least one duplicate.
    candidate_ids = rng.integers(0, num_products // 2, size=candidates)
    candidate_ids[-1] = candidate_ids[0]
    weights = rng.normal(size=length).astype(np.float32)
    return (
        tf.constant(history, tf.int64),
        tf.Variable(weights),
        tf.constant(candidate_ids, tf.int64),
        num_products,
    )


def loss_and_gradient(fn, history, weights, candidate_ids, upstream):
    with tf.GradientTape() as tape:
        bonus = fn(history, weights, candidate_ids)
        loss = tf.reduce_sum(bonus * upstream)
    gradient = tape.gradient(loss, weights)
    # Dense, as with the dense formula: optimizers treat IndexedSlices differently.
    assert isinstance(gradient, tf.Tensor)
    return bonus.numpy(), gradient.numpy()


@pytest.mark.parametrize("seed", range(5))
def test_sparse_bonus_and_its_gradient_equal_the_dense_formula(seed):
    history, weights, candidate_ids, num_products = random_case(seed)
    upstream = tf.random.stateless_normal([history.shape[0], candidate_ids.shape[0]], [seed, 1])
    want, want_grad = loss_and_gradient(
        lambda h, w, c: reference_bonus(h, w, c, num_products),
        history,
        weights,
        candidate_ids,
        upstream,
    )
    got, got_grad = loss_and_gradient(
        model_lib.sparse_repurchase_bonus, history, weights, candidate_ids, upstream
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(want) > 0  # the case exercises matches, not just zeros


def test_sparse_bonus_on_hand_built_input():
    history = tf.constant([[3, 3, 7, -1], [-1, -1, -1, -1], [9, 1, 0, 2]], tf.int64)
    weights = tf.constant([4.0, 3.0, 2.0, 1.0])
    candidate_ids = tf.constant([3, 0, 3, 8, 9], tf.int64)
    bonus = model_lib.sparse_repurchase_bonus(history, weights, candidate_ids).numpy()
    np.testing.assert_allclose(
        bonus,
        [
            [7.0, 0.0, 7.0, 0.0, 0.0],  # 3 twice: 4 + 3; 7 is not a candidate
            [0.0, 0.0, 0.0, 0.0, 0.0],  # no history
            [0.0, 2.0, 0.0, 0.0, 4.0],  # 9 is the largest candidate id
        ],
    )


def test_sparse_bonus_without_candidates_is_empty():
    history = tf.constant([[1, 2], [-1, -1]], tf.int64)
    bonus = model_lib.sparse_repurchase_bonus(
        history, tf.constant([1.0, 2.0]), tf.zeros([0], tf.int64)
    )
    assert bonus.shape == (2, 0)


@pytest.mark.parametrize("candidates", [3, 6, 16])
def test_sparse_bonus_with_shapes_known_only_when_run_matches(candidates):
    history, weights, candidate_ids, num_products = random_case(11, batch=16, candidates=16)
    candidate_ids = candidate_ids[:candidates]
    upstream = tf.random.stateless_normal([16, candidates], [11, 2])

    @tf.function(
        input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64)]
    )
    def traced(history, candidate_ids):
        with tf.GradientTape() as tape:
            bonus = model_lib.sparse_repurchase_bonus(history, weights, candidate_ids)
            loss = tf.reduce_sum(bonus * upstream)
        return bonus, tape.gradient(loss, weights)

    got, got_grad = traced(history, candidate_ids)
    want, want_grad = loss_and_gradient(
        lambda h, w, c: reference_bonus(h, w, c, num_products),
        history,
        weights,
        candidate_ids,
        upstream,
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_grad.numpy(), want_grad, rtol=1e-5, atol=1e-6)
