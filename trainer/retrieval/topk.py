"""Exact top-k over a large candidate set in bounded memory.

The candidates are scored in chunks and a running top-k is kept, so memory is that of one
[queries x chunk] block, not [queries x catalog]. Ties are broken by the lower candidate
index, within a chunk and across chunks, so the result does not depend on the chunk size: it is
the first k columns of a stable descending sort of each row of the full score matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_CHUNK = 16_384


def top_k_stable(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k highest scores, best first, ties by index.

    Args:
        scores: [rows, columns] finite scores.
        k: How many per row (at most ``columns``).

    Returns:
        (indices int64, values), each [rows, min(k, columns)].
    """
    rows, columns = scores.shape
    k = min(k, columns)
    if k == 0:
        return np.empty((rows, 0), np.int64), np.empty((rows, 0), scores.dtype)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    kth = part_scores.min(axis=1, keepdims=True)
    # Where more columns tie with the k-th value than argpartition kept, its pick among them is
    # arbitrary: take those rows' lowest indices (rare with float scores, so sorted row by row).
    ambiguous = (scores == kth).sum(axis=1) > (part_scores == kth).sum(axis=1)
    for r in np.flatnonzero(ambiguous):
        part[r] = np.argsort(-scores[r], kind="stable")[:k]
        part_scores[r] = scores[r, part[r]]
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def exact_top_k(
    queries: np.ndarray, candidates: np.ndarray, k: int, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over the whole catalog, in query batches.

    One [batch x catalog] block per query batch: the unchunked reference that the tests and
    ``bench/topk.py`` hold ``exact_top_k_chunked`` to. Callers use the chunked one, whose
    memory does not grow with the catalog.

    Returns (indices, scores), each queries x k, best first; ties by lower index.
    """
    cand_t = np.ascontiguousarray(candidates.T, dtype=np.float32)
    parts = [
        top_k_stable(queries[start : start + batch_size].astype(np.float32) @ cand_t, k)
        for start in range(0, queries.shape[0], batch_size)
    ]
    if not parts:
        k = min(k, candidates.shape[0])
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def chunked_top_k(
    score_fn: Callable[[int, int], np.ndarray],
    n_candidates: int,
    k: int,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every query over ``n_candidates`` candidates, scored chunk by chunk.

    Args:
        score_fn: ``score_fn(start, stop)`` -> [queries, stop - start] scores of candidates
            ``start`` to ``stop - 1`` (the same queries on every call).
        n_candidates: Number of candidates.
        k: How many per query (at most ``n_candidates``).
        chunk: Candidates scored per call: memory is about queries x chunk x 17 bytes for
            float32 scores (the scores, their negation and argpartition's int64 indices).

    Returns:
        (candidate indices int64, scores), each [queries, min(k, n_candidates)], best first;
        ties by lower candidate index.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    if n_candidates == 0:
        empty = np.asarray(score_fn(0, 0))
        return np.empty((empty.shape[0], 0), np.int64), empty
    best_idx = best_val = None
    for start in range(0, n_candidates, chunk):
        idx, val = top_k_stable(np.asarray(score_fn(start, min(start + chunk, n_candidates))), k)
        idx += start
        if best_idx is not None:
            idx = np.concatenate([best_idx, idx], axis=1)
            val = np.concatenate([best_val, val], axis=1)
            order = np.lexsort((idx, -val), axis=1)[:, :k]
            idx, val = (
                np.take_along_axis(idx, order, axis=1),
                np.take_along_axis(val, order, axis=1),
            )
        best_idx, best_val = idx, val
    return best_idx, best_val


def mask_seen(
    scores: np.ndarray, start: int, seen_queries: np.ndarray, seen_rows: np.ndarray
) -> np.ndarray:
    """Scores of candidates ``start`` on with -inf where a query has already seen the candidate.

    Args:
        scores: [queries, width] scores of candidates ``start`` to ``start + width - 1``.
        start: First candidate of the chunk.
        seen_queries: Query index of each (query, candidate) pair to exclude.
        seen_rows: Candidate index of each pair.

    Returns:
        A copy of ``scores`` with the pairs inside the chunk set to -inf.
    """
    inside = (seen_rows >= start) & (seen_rows < start + scores.shape[1])
    out = np.array(scores, copy=True)
    out[seen_queries[inside], seen_rows[inside] - start] = -np.inf
    return out


def drop_masked(indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices with -1 where the score is -inf: an excluded candidate is an empty slot.

    Only a query that has seen nearly every candidate gets such slots (at the end of its
    top-k), when fewer than k others remain.
    """
    return np.where(np.isneginf(values), -1, indices)


def exact_top_k_chunked(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int,
    batch_size: int = 1024,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """``exact_top_k`` (inner product) in bounded memory: candidates in chunks.

    Args:
        queries: [queries, dim] query embeddings.
        candidates: [candidates, dim] candidate embeddings.
        k: How many per query.
        batch_size: Queries per block.
        chunk: Candidates per block (see ``chunked_top_k`` for the memory).

    Returns:
        (indices, scores), each [queries, min(k, candidates)], best first; ties by lower index.
    """
    candidates = np.asarray(candidates, np.float32)
    k = min(k, candidates.shape[0])
    parts = []
    for start in range(0, queries.shape[0], batch_size):
        block = np.asarray(queries[start : start + batch_size], np.float32)
        parts.append(
            chunked_top_k(
                lambda a, b, q=block: q @ candidates[a:b].T, candidates.shape[0], k, chunk
            )
        )
    if not parts:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def mask_seen_tf(scores, start, seen_queries, seen_rows):
    """TensorFlow twin of ``mask_seen`` (int64 pair indices, scalar ``start``)."""
    import tensorflow as tf  # here: the NumPy functions above serve evaluation without TF

    start = tf.cast(start, tf.int64)
    width = tf.cast(tf.shape(scores)[1], tf.int64)
    inside = (seen_rows >= start) & (seen_rows < start + width)
    pairs = tf.stack(
        [tf.boolean_mask(seen_queries, inside), tf.boolean_mask(seen_rows, inside) - start], 1
    )
    fill = tf.fill(tf.shape(pairs)[:1], tf.constant(-float("inf"), scores.dtype))
    return tf.tensor_scatter_nd_update(scores, pairs, fill)


def chunked_top_k_tf(score_fn: Callable, n_candidates, k: int, chunk: int = DEFAULT_CHUNK):
    """TensorFlow twin of ``chunked_top_k`` for graphs (the serving signature): a while loop.

    Args:
        score_fn: ``score_fn(start, stop)`` -> [queries, stop - start] float32 scores of
            candidates ``start`` to ``stop - 1`` (scalar int32 tensors; the same queries on
            every call).
        n_candidates: Number of candidates (int or scalar int32 tensor).
        k: How many per query (a Python int, at most ``n_candidates`` and ``chunk``).
        chunk: Candidates scored per iteration: memory is one [queries x chunk] block.

    Returns:
        (scores, candidate indices int32), each [queries, k], best first; ties by lower index
        (``tf.math.top_k`` keeps equal values in position order, and the running top-k, all of
        lower indices, comes first in each merge).
    """
    import tensorflow as tf  # here: the NumPy functions above serve evaluation without TF

    if not 0 < k <= chunk:
        raise ValueError(f"need 0 < k <= chunk, got k={k}, chunk={chunk}")
    n_candidates = tf.convert_to_tensor(n_candidates, tf.int32)
    first = score_fn(tf.constant(0), tf.minimum(chunk, n_candidates))
    best = tf.math.top_k(first, k=k)

    def body(start, values, indices):
        stop = tf.minimum(start + chunk, n_candidates)
        top = tf.math.top_k(score_fn(start, stop), k=tf.minimum(k, stop - start))
        merged = tf.math.top_k(tf.concat([values, top.values], 1), k=k)
        all_indices = tf.concat([indices, top.indices + start], 1)
        return stop, merged.values, tf.gather(all_indices, merged.indices, batch_dims=1)

    _, values, indices = tf.while_loop(
        lambda start, *_: start < n_candidates,
        body,
        (tf.minimum(chunk, n_candidates), best.values, best.indices),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, k]), tf.TensorShape([None, k])),
        # The next chunk's scores need only ``start``: with TF's default of 10 iterations in
        # flight, 10 score blocks would be held at once (582 MiB instead of ~200 per 1,000
        # queries at 1M products, chunk 16,384).
        parallel_iterations=1,
    )
    return values, indices
