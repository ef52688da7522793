"""``training.ranking_stage``: a second stage that re-ranks the retrieval stage's candidates.

The retrieval stage (the two towers) is trained on the next purchase, one row at a time; what
is evaluated is which distinct products a buyer takes over the following weeks, where the
buyer's own repeat items, their timing and the products' recent demand decide much of it. The
ranking stage is a gradient-boosted tree classifier (scikit-learn's
``HistGradientBoostingClassifier``) over the candidates and features of
``trainer.rank.features``, fit with the validation window's purchases as labels: the
candidates and features come from the train rows only and the retrieval lists from the model
chosen on validation (which never saw the eval split), the same way the test window's come
from train + eval and the exported model.

Decided on validation, never on test:

- **The figure on validation** is cross-fitted: the validation buyers are split in
  ``FOLDS`` by a hash of their id, each part ranked by a ranker fit on the others, so no buyer
  is ranked by a ranker that saw its own targets.
- **Kept or not**: the stage is kept when its cross-fitted validation recall@max(k) beats the
  retrieval stage's alone on the same buyers (the next k breaks a tie), else dropped and the
  run's lists are the retrieval stage's.
- **The test lists**: the fold rankers rank the test candidates together (the mean of their
  probabilities), so the trees that rank test are those whose held-out figure decided.

The trees' settings are fixed (``PARAMS``), not searched per dataset. Memory is bounded
whatever the number of buyers: the rankers are fit on at most ``MAX_FIT_BUYERS`` validation
buyers (a hash sample; the others are ranked by the fold rankers, which never saw them, so the
decision still covers every validation buyer), and frames are built and scored
``CHUNK_BUYERS`` queries at a time. On Online Retail
(bench/RESULTS.md, "The ranking stage") it raised test recall@100 from 0.3717 to 0.3856.

The exported SavedModel (and the Vertex endpoint) serves the retrieval stage; the ranker is
saved beside the evaluation (``contract.RANKING_DIR``: the fitted trees and their record), a
batch stage over its candidates, not yet part of the served graph.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from trainer import contract
from trainer.rank.features import FEATURES, LABEL, QUERY, ROW
from trainer.retrieval import EvalSet, recall_at_k

log = logging.getLogger(__name__)

FOLDS = 2
# Memory bounds (the frames are buyers x ~800 candidates x the features, in float64): the
# rankers are fit on at most MAX_FIT_BUYERS validation buyers (a hash sample), and frames are
# built and scored CHUNK_BUYERS queries at a time.
MAX_FIT_BUYERS = 10_000
CHUNK_BUYERS = 5_000
# Builds the candidate frame of the given queries (positions), numbered from 0 in that order.
FrameOf = Callable[[np.ndarray], pd.DataFrame]
# Chosen on Online Retail's validation window as the cheapest within 0.001 of the best
# (bench/RESULTS.md, "The ranking stage"): 100 trees at 0.1 score 0.3635 against 200 at 0.05's
# 0.3640, in half the time (the stage runs in every evaluate step).
PARAMS = {
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": 0,
}


class NotFittable(ValueError):
    """The validation candidates cannot fit a ranker (no bought, or no unbought, candidate)."""


@dataclasses.dataclass
class Ranked:
    """What the stage decided and produced."""

    kept: bool
    reason: str
    val_top: np.ndarray | None  # the cross-fitted validation lists (queries x k)
    test_top: np.ndarray | None  # the test lists (queries x k), by the fold rankers together
    test_scores: np.ndarray | None
    record: dict
    model: object | None = None


def _matrix(frame: pd.DataFrame) -> np.ndarray:
    """The features as floats, a column without any value (no strong baseline, say) as 0.

    scikit-learn 1.9's binning fails on an all-missing column; the trees never split on a
    constant, so scoring a later frame that has values there is unaffected.
    """
    x = np.array(frame[list(FEATURES)].to_numpy(np.float64), copy=True)
    if len(x):
        x[:, np.isnan(x).all(axis=0)] = 0.0
    return x


def _fit(frame: pd.DataFrame):
    from sklearn.ensemble import HistGradientBoostingClassifier

    labels = frame[LABEL].to_numpy()
    model = HistGradientBoostingClassifier(**PARAMS)
    if labels.all() or not labels.any():
        what = "no candidate" if not labels.any() else "every candidate"
        raise NotFittable(f"{what} of {len(labels):,} was bought in the validation window")
    model.fit(_matrix(frame), labels)
    return model


def _scores(model, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(_matrix(frame))[:, 1]


def top_lists(frame: pd.DataFrame, scores: np.ndarray, queries: int, k: int):
    """Each query's best ``k`` candidates by ``scores``: (catalog rows, scores), -1 padded.

    Ties go to the better retrieval rank, so equal scores keep the retrieval stage's order.
    """
    ordered = pd.DataFrame(
        {
            QUERY: frame[QUERY].to_numpy(),
            ROW: frame[ROW].to_numpy(),
            "s": scores,
            "r": frame["retrieval_rank"].to_numpy(),
        }
    ).sort_values([QUERY, "s", "r"], ascending=[True, False, True], kind="stable")
    place = ordered.groupby(QUERY).cumcount().to_numpy()
    keep = place < k
    rows = np.full((queries, k), -1, np.int64)
    values = np.full((queries, k), -np.inf, np.float64)
    q = ordered[QUERY].to_numpy()[keep]
    rows[q, place[keep]] = ordered[ROW].to_numpy()[keep]
    values[q, place[keep]] = ordered["s"].to_numpy()[keep]
    return rows, values


def _hashes(buyers: np.ndarray, part: slice) -> np.ndarray:
    """A part of each buyer id's SHA-1 (hex digits), as integers: the same on every run."""
    digests = (hashlib.sha1(str(b).encode()).hexdigest() for b in buyers)
    return np.array([int(d[part], 16) for d in digests], np.int64)


def fold_of(buyers: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """Each buyer's cross-fitting fold, from a hash of its id (the same on every run)."""
    return _hashes(buyers, slice(0, 8)) % folds


class Folded:
    """The rankers of the cross-fit, one per fold: each fit on the other folds' buyers.

    Scoring new candidates (the test window's) averages their probabilities, so the test lists
    come from the same trees whose held-out figure decided the stage.
    """

    def __init__(self, models: list):
        self.models = models

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The fold rankers' mean class probabilities (sklearn's ``predict_proba`` layout)."""
        return np.mean([m.predict_proba(x) for m in self.models], axis=0)


def cross_fitted(frame: pd.DataFrame, buyers: np.ndarray, k: int) -> tuple[np.ndarray, Folded]:
    """Validation lists where each fold is ranked by a ranker fit on the other folds."""
    fold = fold_of(buyers)
    out = np.full((len(buyers), k), -1, np.int64)
    of_row = fold[frame[QUERY].to_numpy()]
    models = []
    for f in range(FOLDS):
        held = of_row == f
        model = _fit(frame[~held])
        models.append(model)
        if not held.any():
            continue
        rows, _ = top_lists(frame[held], _scores(model, frame[held]), len(buyers), k)
        mine = fold == f
        out[mine] = rows[mine]
    return out, Folded(models)


def _decide(ranked: dict[int, float], alone: dict[int, float]) -> tuple[bool, str]:
    for k in sorted(ranked, reverse=True):
        if ranked[k] != alone[k]:
            better = ranked[k] > alone[k]
            verb = "beat" if better else "did not beat"
            return better, (
                f"cross-fitted validation recall@{k} {ranked[k]:.4f} {verb} the retrieval "
                f"stage's {alone[k]:.4f}"
            )
    return False, "cross-fitted validation recall equal to the retrieval stage's at every k"


def fit_sample(buyers: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Positions of the validation buyers the rankers are fit on: all, or ``limit`` by hash.

    The candidate frame is buyers x ~800 rows of ``len(FEATURES)`` floats, so fitting on every
    validation buyer of a large dataset would not fit in memory; the same hash as the folds
    picks the sample, so a run always fits on the same buyers.
    """
    limit = MAX_FIT_BUYERS if limit is None else limit
    if len(buyers) <= limit:
        return np.arange(len(buyers))
    keys = _hashes(buyers, slice(8, 16))  # not the fold's digits: the sample spans both folds
    return np.sort(np.argsort(keys, kind="stable")[:limit])


def rank_in_chunks(model, frame_of: FrameOf, queries: int, k: int):
    """Every query's top ``k`` by ``model``, its frames built ``CHUNK_BUYERS`` queries at a time."""
    rows = np.full((queries, k), -1, np.int64)
    scores = np.full((queries, k), -np.inf, np.float64)
    candidates = 0
    for start in range(0, queries, CHUNK_BUYERS):
        part = np.arange(start, min(start + CHUNK_BUYERS, queries))
        frame = frame_of(part)
        candidates += len(frame)
        rows[part], scores[part] = top_lists(frame, _scores(model, frame), len(part), k)
    return rows, scores, candidates


def frame_source(frame: pd.DataFrame) -> FrameOf:
    """A ``FrameOf`` over a built frame: the rows of the asked queries, renumbered from 0."""
    by_query = frame[QUERY].to_numpy()

    def frame_of(queries: np.ndarray) -> pd.DataFrame:
        local = pd.Series(np.arange(len(queries)), index=queries)
        part = frame[np.isin(by_query, queries)]
        return part.assign(**{QUERY: local[part[QUERY].to_numpy()].to_numpy()})

    return frame_of


def run_stage(
    val_frame_of: FrameOf,
    val_set: EvalSet,
    val_retrieval: np.ndarray,
    test_frame_of: FrameOf,
    test_queries: int,
) -> Ranked:
    """Fits, cross-checks and decides the ranking stage; ranks the test candidates.

    Args:
        val_frame_of: The validation candidates with features and labels (``with_labels``)
            of the given queries (positions in ``val_set``), numbered from 0 in that order.
        val_set: The validation queries and targets.
        val_retrieval: The retrieval stage's validation lists (its figure beside the stage's).
        test_frame_of: The same for the test candidates (no labels).
        test_queries: How many test queries there are.
    """
    started = time.perf_counter()
    k = max(contract.RECALL_KS)
    sample = fit_sample(val_set.buyers)
    val_frame = val_frame_of(sample)
    labels = val_frame[LABEL].to_numpy()
    record = {
        "features": list(FEATURES),
        "params": PARAMS,
        "folds": FOLDS,
        "fit_buyers": int(len(sample)),
        "val_candidates": int(len(val_frame)),
        "val_candidate_recall": float(
            labels.sum() / max(sum(len(val_set.positives[i]) for i in sample), 1)
        ),
    }
    try:
        fitted, model = cross_fitted(val_frame, val_set.buyers[sample], k)
    except NotFittable as err:  # a tiny or degenerate validation window: retrieval alone
        reason = f"not fit: {err}"
        record.update(kept=False, reason=reason, seconds=time.perf_counter() - started)
        log.warning("ranking stage dropped: %s", reason)
        return Ranked(False, reason, None, None, None, record)
    del val_frame
    val_top = np.full((len(val_set.buyers), k), -1, np.int64)
    val_top[sample] = fitted
    rest = np.setdiff1d(np.arange(len(val_set.buyers)), sample)
    if len(rest):  # beyond the fit sample: ranked by the fold rankers, which never saw them
        val_top[rest] = rank_in_chunks(model, lambda q: val_frame_of(rest[q]), len(rest), k)[0]
    ranked = recall_at_k(val_top, val_set)
    alone = recall_at_k(val_retrieval, val_set)
    kept, reason = _decide(ranked, alone)
    test_top, test_scores, test_candidates = rank_in_chunks(model, test_frame_of, test_queries, k)
    record.update(
        kept=kept,
        reason=reason,
        val_recall={"ranking": ranked, "retrieval": alone},
        test_candidates=test_candidates,
        seconds=time.perf_counter() - started,
    )
    log.info("ranking stage %s: %s (%.1f s)", "kept" if kept else "dropped", reason,
             record["seconds"])  # fmt: skip
    return Ranked(kept, reason, val_top, test_top, test_scores, record, model)


def save(ranked: Ranked, folder: str) -> list[str]:
    """Writes the ranker (joblib) and its record; returns their paths."""
    import joblib

    os.makedirs(folder, exist_ok=True)
    record_path = os.path.join(folder, contract.RANKING_FILE)
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump(ranked.record, f, indent=2, default=str)
    paths = [record_path]
    if ranked.model is not None:
        model_path = os.path.join(folder, contract.RANKER_FILE)
        joblib.dump({"model": ranked.model, "features": list(FEATURES)}, model_path)
        paths.append(model_path)
    return paths
