"""Chunked exact top-k against the full score matrix, ties included."""

import numpy as np
import pytest

from trainer.retrieval import topk


def stable_top_k(scores, k):
    """The definition: first k columns of a stable descending sort of each row."""
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def scorer(scores, widths=None):
    def score_fn(start, stop):
        if widths is not None:
            widths.append(stop - start)
        return scores[:, start:stop]

    return score_fn


@pytest.mark.parametrize("chunk", [1, 7, 50, 64, 1000])
@pytest.mark.parametrize("k", [1, 10, 64, 80])
def test_chunked_top_k_equals_the_full_sort_with_ties_by_index(chunk, k):
    rng = np.random.default_rng(chunk * 100 + k)
    # Integer scores in a small range: many ties, inside chunks and across them.
    scores = rng.integers(0, 6, size=(9, 64)).astype(np.float32)
    widths = []
    idx, val = topk.chunked_top_k(scorer(scores, widths), 64, k, chunk)
    want_idx, want_val = stable_top_k(scores, min(k, 64))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)
    assert max(widths) <= chunk and sum(widths) == 64  # never more than a chunk at once


def test_chunked_top_k_equals_the_stable_top_k_on_float_scores():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 1000)).astype(np.float32)
    idx, val = topk.chunked_top_k(scorer(scores), 1000, 100, chunk=128)
    want_idx, want_val = topk.top_k_stable(scores, 100)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)


def test_top_k_stable_takes_the_lowest_indices_among_ties():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]], np.float32)
    idx, val = topk.top_k_stable(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1]]
    assert val.tolist() == [[3.0, 3.0], [2.0, 2.0]]


def test_chunked_top_k_edge_sizes():
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx, _ = topk.chunked_top_k(scorer(scores), 4, k=10, chunk=3)  # k above the candidates
    assert idx.tolist() == [[3, 2, 1, 0]] * 3
    idx, val = topk.chunked_top_k(scorer(scores), 0, k=5)
    assert idx.shape == (3, 0) and val.shape == (3, 0)
    with pytest.raises(ValueError, match="chunk must be positive"):
        topk.chunked_top_k(scorer(scores), 4, k=2, chunk=0)


def test_exact_top_k_chunked_equals_exact_top_k():
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(50, 8)).astype(np.float32)
    candidates = rng.normal(size=(300, 8)).astype(np.float32)
    want = topk.exact_top_k(queries, candidates, k=25, batch_size=16)
    got = topk.exact_top_k_chunked(queries, candidates, k=25, batch_size=16, chunk=64)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    empty = topk.exact_top_k_chunked(queries[:0], candidates, k=25)
    assert empty[0].shape == (0, 25)


@pytest.mark.parametrize("chunk", [5, 16, 64, 100])
def test_chunked_top_k_tf_equals_the_full_sort_with_ties_by_index(chunk):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(chunk)
    scores = rng.integers(0, 6, size=(9, 64)).astype(np.float32)
    table = tf.constant(scores)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def traced(table):  # query count and catalog size unknown when traced, as in serving
        return topk.chunked_top_k_tf(
            lambda a, b: table[:, a:b], tf.shape(table)[1], k=5, chunk=chunk
        )

    want_idx, want_val = stable_top_k(scores, 5)
    for values, indices in (
        topk.chunked_top_k_tf(lambda a, b: table[:, a:b], 64, k=5, chunk=chunk),
        traced(table),
    ):
        np.testing.assert_array_equal(indices.numpy(), want_idx)
        np.testing.assert_array_equal(values.numpy(), want_val)
    with pytest.raises(ValueError, match="k <= chunk"):
        topk.chunked_top_k_tf(lambda a, b: table[:, a:b], 64, k=10, chunk=4)


def test_mask_seen_excludes_pairs_inside_each_chunk_and_masked_slots_become_empty():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(3, 10)).astype(np.float32)
    seen_q, seen_r = np.array([0, 0, 2, 2, 2]), np.array([1, 8, 0, 5, 9])
    masked = scores.copy()
    masked[seen_q, seen_r] = -np.inf
    idx, val = topk.chunked_top_k(
        lambda a, b: topk.mask_seen(scores[:, a:b], a, seen_q, seen_r), 10, k=9, chunk=4
    )
    want_idx, want_val = stable_top_k(masked, 9)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)
    rows = topk.drop_masked(idx, val)
    assert (rows[2, -2:] == -1).all() and (rows[:2, :8] >= 0).all()  # query 2 saw 3 of 10
    for q, r in zip(seen_q, seen_r, strict=True):
        assert r not in rows[q]
    tf = pytest.importorskip("tensorflow")
    table = tf.constant(scores)
    values, indices = topk.chunked_top_k_tf(
        lambda a, b: topk.mask_seen_tf(table[:, a:b], a, tf.constant(seen_q), tf.constant(seen_r)),
        10,
        k=9,
        chunk=9,  # the TF loop needs k <= chunk
    )
    np.testing.assert_array_equal(values.numpy(), want_val)
    np.testing.assert_array_equal(np.where(np.isneginf(want_val), -1, indices.numpy()), rows)
