"""The field's strong simple baselines: TIFU-KNN for repeat domains, EASE / item-kNN otherwise.

**TIFU-KNN** (Hu et al., "Modeling Personalized Item Frequency Information for Next-basket
Recommendation", SIGIR 2020). A buyer's baskets (purchase days) in time order are cut into
groups of ``group_size`` from the most recent back; within a group basket ``i`` (0 = the
group's last) weighs ``basket_decay ** i``, and group ``j`` (0 = the most recent) weighs
``group_decay ** j``; each group is the mean of its weighted baskets and the buyer's vector
the mean of the weighted groups. The score is ``alpha * own + (1 - alpha) * mean of the
``neighbours`` nearest buyers' vectors`` (cosine similarity over all train buyers' vectors,
the buyer left out). Ties and the products nobody near bought are ordered by popularity.

**EASE** (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): with X the
buyer x product matrix of who bought what, ``P = (X^T X + lambda I)^-1`` and
``B = -P / diag(P)`` with a zero diagonal; a buyer's scores are ``x B``. Its item-item matrix
is dense: above ``EASE_MAX_ITEMS`` products (a 10,000 x 10,000 float32 matrix is 400 MB and its
inversion minutes on two cores) **item-kNN** takes its place (cosine similarity of the
products' buyer columns, each product's ``neighbours`` most similar kept).

Both are chosen on validation only, over the small grids below (``tune``): the parameters
best at recall@max(k) on the validation window (history = train) score the test window
(history = train + eval). Everything is NumPy / SciPy sparse; nothing here reads the test
split.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import sparse

from trainer import contract
from trainer.retrieval.metrics import EvalSet, catalog_index, popularity_ranking, recall_at_k
from trainer.retrieval.topk import top_k_stable

log = logging.getLogger(__name__)

EASE_MAX_ITEMS = 10_000
SECONDS_PER_DAY = 86_400
# The grids, small on purpose (each point is one scoring of the validation window).
# TIFU-KNN: 12 points around the paper's tuned values for grocery data (group size 3-7,
# within-group decay 0.9, across-group decay 0.6-1.0, alpha 0.7-0.9, 300 neighbours).
TIFU_GRID = {
    "group_size": (3, 7),
    "basket_decay": (0.9,),
    "group_decay": (0.6, 0.8, 1.0),
    "neighbours": (300,),
    "alpha": (0.7, 0.9),
}
EASE_GRID = {"l2": (10.0, 100.0, 500.0, 2000.0)}
ITEM_KNN_GRID = {"neighbours": (50, 200, 800)}
CHUNK = 2048  # query rows scored at once


@dataclasses.dataclass
class Tuned:
    """A baseline's choice on validation."""

    name: str
    params: dict
    val_recall: float  # at max(k), of the chosen params
    grid: list[dict]  # every point tried: params and validation recall
    seconds: float


def _rows(history: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    index = catalog_index(catalog)
    known = history[history[contract.PRODUCT_ID].isin(index)]
    return pd.DataFrame(
        {
            "buyer": known[contract.BUYER_ID].to_numpy(),
            "row": known[contract.PRODUCT_ID].map(index).to_numpy(np.int64),
            "day": (known[contract.TIMESTAMP].to_numpy(np.int64) // SECONDS_PER_DAY),
        }
    )


def buyer_matrix(
    history: pd.DataFrame, catalog: pd.DataFrame, buyers: np.ndarray
) -> sparse.csr_matrix:
    """Which of ``buyers`` (rows, in order) bought which catalog product (columns), 0/1."""
    rows = _rows(history, catalog).drop_duplicates(["buyer", "row"])
    position = pd.Series(np.arange(len(buyers)), index=pd.Index(buyers))
    rows = rows[rows["buyer"].isin(position.index)]
    r = position[rows["buyer"]].to_numpy()
    data = np.ones(len(rows), np.float32)
    return sparse.csr_matrix((data, (r, rows["row"].to_numpy())), (len(buyers), len(catalog)))


def tifu_vectors(
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    buyers: np.ndarray,
    group_size: int,
    basket_decay: float,
    group_decay: float,
) -> sparse.csr_matrix:
    """Each buyer's time-decayed item frequency vector (rows in ``buyers`` order)."""
    rows = _rows(history, catalog).drop_duplicates(["buyer", "day", "row"])
    position = pd.Series(np.arange(len(buyers)), index=pd.Index(buyers))
    rows = rows[rows["buyer"].isin(position.index)]
    days = rows[["buyer", "day"]].drop_duplicates().sort_values(["buyer", "day"])
    # Basket position from the most recent (0), its group and its place in the group.
    days["back"] = days.groupby("buyer").cumcount(ascending=False)
    days["n"] = days.groupby("buyer")["day"].transform("size")
    days["group"] = days["back"] // group_size
    days["in_group"] = days["back"] % group_size
    groups = days.groupby(["buyer", "group"])["day"].transform("size")
    n_groups = (days["n"] + group_size - 1) // group_size
    days["w"] = basket_decay ** days["in_group"] / groups * group_decay ** days["group"] / n_groups
    rows = rows.merge(days[["buyer", "day", "w"]], on=["buyer", "day"])
    r = position[rows["buyer"]].to_numpy()
    data = rows["w"].to_numpy(np.float32)
    return sparse.csr_matrix((data, (r, rows["row"].to_numpy())), (len(buyers), len(catalog)))


def _normalised(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms).astype(np.float32) @ matrix


def _top_rows(scores: np.ndarray, k: int, tie_break: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k catalog rows of dense scores and the scores, ties (and zeros) by popularity."""
    return top_k_stable(scores + tie_break, min(k, scores.shape[1]))


def _popularity_tie_break(history: pd.DataFrame, catalog: pd.DataFrame) -> np.ndarray:
    """Below any real score difference: 1e-6 x (1 - popularity rank / catalog size)."""
    ranking = popularity_ranking(history, catalog)
    rank = np.empty(len(catalog), np.float64)
    rank[ranking] = np.arange(len(catalog))
    return (1e-6 * (1.0 - rank / max(len(catalog), 1))).astype(np.float32)


def tifu_knn_top_k(
    eval_set: EvalSet,
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    k: int,
    params: dict,
    with_scores: bool = False,
):
    """TIFU-KNN's top-k catalog rows for every query (history: what came before the split).

    With ``with_scores``: (rows, their scores).
    """
    everyone = np.array(sorted(set(history[contract.BUYER_ID])), dtype=object)
    vectors = tifu_vectors(
        history,
        catalog,
        everyone,
        params["group_size"],
        params["basket_decay"],
        params["group_decay"],
    )
    position = pd.Series(np.arange(len(everyone)), index=pd.Index(everyone))
    queries = position.reindex(eval_set.buyers).to_numpy()
    unit = _normalised(vectors)
    tie = _popularity_tie_break(history, catalog)
    neighbours, alpha = int(params["neighbours"]), float(params["alpha"])
    out = np.empty((len(queries), min(k, len(catalog))), np.int64)
    values = np.empty(out.shape, np.float32)
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        known = ~np.isnan(chunk.astype(float))
        idx = chunk[known].astype(np.int64)
        own = np.zeros((len(chunk), len(catalog)), np.float32)
        near = np.zeros_like(own)
        if len(idx):
            own[known] = vectors[idx].toarray()
            similarity = (unit[idx] @ unit.T).toarray()
            similarity[np.arange(len(idx)), idx] = -np.inf  # not one's own neighbour
            n = min(neighbours, max(len(everyone) - 1, 1))
            nearest = np.argpartition(-similarity, n - 1, axis=1)[:, :n]
            weights = sparse.csr_matrix(
                (np.full(nearest.size, 1.0 / n, np.float32), nearest.ravel(),
                 np.arange(0, nearest.size + 1, n)),
                shape=(len(idx), len(everyone)),
            )  # fmt: skip
            near[known] = (weights @ vectors).toarray()
        top, value = _top_rows(alpha * own + (1 - alpha) * near, k, tie)
        out[start : start + len(chunk)], values[start : start + len(chunk)] = top, value
    return (out, values) if with_scores else out


def _item_matrix(x: sparse.csr_matrix, name: str, params: dict) -> np.ndarray | sparse.spmatrix:
    if name == contract.BASELINE_EASE:
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += params["l2"]
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        return b.astype(np.float32)
    # item-kNN: cosine over the products' buyer columns, the most similar kept per product.
    unit = _normalised(sparse.csr_matrix(x.T))
    sim = (unit @ unit.T).tocsr()
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    keep = int(params["neighbours"])
    rows, cols, vals = [], [], []
    for i in range(sim.shape[0]):
        start, end = sim.indptr[i], sim.indptr[i + 1]
        if end - start > keep:
            order = np.argpartition(-sim.data[start:end], keep - 1)[:keep] + start
        else:
            order = np.arange(start, end)
        rows.append(np.full(len(order), i))
        cols.append(sim.indices[order])
        vals.append(sim.data[order])
    shape = sim.shape
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape
    ).T.tocsr()


def item_model_top_k(
    eval_set: EvalSet,
    history: pd.DataFrame,
    catalog: pd.DataFrame,
    k: int,
    params: dict,
    exclude_seen: bool = True,
    name: str = "",
    with_scores: bool = False,
):
    """EASE's (or, above EASE_MAX_ITEMS products, item-kNN's) top-k catalog rows per query.

    With ``with_scores``: (rows, their scores; NaN at an empty slot).
    """
    name = name or item_baseline(len(catalog))
    everyone = np.array(sorted(set(history[contract.BUYER_ID])), dtype=object)
    x = buyer_matrix(history, catalog, everyone)
    weights = _item_matrix(x, name, params)
    queries = buyer_matrix(history, catalog, eval_set.buyers)
    tie = _popularity_tie_break(history, catalog)
    out = np.full((len(eval_set.buyers), min(k, len(catalog))), -1, np.int64)
    values = np.full(out.shape, np.nan, np.float32)
    for start in range(0, queries.shape[0], CHUNK):
        chunk = queries[start : start + CHUNK]
        product = chunk @ weights
        product = product.toarray() if sparse.issparse(product) else product
        scores = np.asarray(product, dtype=np.float32)
        scores = scores + tie
        if exclude_seen:
            scores[chunk.nonzero()] = -np.inf
        top, value = _top_rows(scores, k, 0.0)
        if exclude_seen:
            top = np.where(value == -np.inf, -1, top)
            value = np.where(top < 0, np.nan, value)
        out[start : start + chunk.shape[0]] = top
        values[start : start + chunk.shape[0]] = value
    return (out, values) if with_scores else out


def item_baseline(catalog_size: int) -> str:
    """EASE up to EASE_MAX_ITEMS products, item-kNN above (EASE's matrix would not fit)."""
    return contract.BASELINE_EASE if catalog_size <= EASE_MAX_ITEMS else contract.BASELINE_ITEM_KNN


def _points(grid: dict) -> list[dict]:
    keys = sorted(grid)
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def tune(
    name: str,
    score: Callable[[dict], np.ndarray],
    grid: dict,
    val_set: EvalSet,
) -> Tuned:
    """The grid point best at validation recall@max(k) (ties: the first)."""
    started = time.perf_counter()
    k = max(contract.RECALL_KS)
    tried = []
    for params in _points(grid):
        recall = recall_at_k(score(params), val_set, (k,))[k]
        tried.append({"params": params, "val_recall": recall})
    best = max(tried, key=lambda t: (t["val_recall"], -tried.index(t)))
    seconds = time.perf_counter() - started
    log.info(
        "%s: chose %s on validation (recall@%d %.4f) in %.1f s",
        name,
        best["params"],
        k,
        best["val_recall"],
        seconds,
    )
    return Tuned(name, best["params"], best["val_recall"], tried, seconds)


def _buyers_of(split: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    known = set(train[contract.BUYER_ID])
    return np.array(sorted(b for b in set(split[contract.BUYER_ID]) if b in known), dtype=object)


def _scorer(name: str, exclude_seen: bool):
    """(top-k function, grid) of a strong baseline."""
    if name == contract.BASELINE_TIFU_KNN:
        return (lambda e, h, c, k, p, s=False: tifu_knn_top_k(e, h, c, k, p, s)), TIFU_GRID
    grid = EASE_GRID if name == contract.BASELINE_EASE else ITEM_KNN_GRID
    return (
        lambda e, h, c, k, p, s=False: item_model_top_k(e, h, c, k, p, exclude_seen, name, s)
    ), grid


def strong_baselines(
    train: pd.DataFrame,
    eval_: pd.DataFrame,
    test: pd.DataFrame,
    catalog: pd.DataFrame,
    exclude_seen: bool,
    max_buyers: int = 200_000,
) -> tuple[pd.DataFrame, dict]:
    """The strong baseline of the domain, tuned on validation, for the eval and test buyers.

    TIFU-KNN where buyers re-buy (``exclude_seen`` off), EASE (item-kNN above EASE_MAX_ITEMS
    products) where they do not. Validation: history = train, targets = the eval split;
    test: history = train + eval, with the parameters chosen on validation.

    Returns:
        (lists, record): one row per (split ``val``/``test``, baseline, buyer) with its top
        ``contract.STRONG_LIST_K`` catalog rows (its top max(k) are the baseline, the rest the
        ranking stage's candidates), and what was chosen, how well, the grid and the time taken.
    """
    name = contract.BASELINE_TIFU_KNN if not exclude_seen else item_baseline(len(catalog))
    buyers = len(set(train[contract.BUYER_ID]))
    if buyers > max_buyers:
        reason = f"{buyers:,} train buyers, over the {max_buyers:,} these baselines are run for"
        log.warning("strong baseline %s skipped: %s", name, reason)
        return pd.DataFrame(), {"baseline": name, "skipped": reason}
    from trainer.retrieval.metrics import build_eval_set

    k = max(contract.RECALL_KS)
    width = max(k, contract.STRONG_LIST_K)  # the ranking stage's candidates
    top_k, grid = _scorer(name, exclude_seen)
    val_set = build_eval_set(eval_, train, catalog, seen=train if exclude_seen else None)
    tuned = tune(name, lambda p: top_k(val_set, train, catalog, k, p), grid, val_set)
    history = pd.concat([train, eval_])
    frames, started = [], time.perf_counter()
    for split, targets, before in (("val", eval_, train), ("test", test, history)):
        queries = EvalSet(_buyers_of(targets, train), [], 0)
        top, scores = top_k(queries, before, catalog, width, tuned.params, True)
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "baseline": name,
                    contract.BUYER_ID: queries.buyers.astype(str),
                    "rows": list(top.astype(np.int32)),
                    "scores": list(scores.astype(np.float32)),
                }
            )
        )
    record = dataclasses.asdict(tuned)
    record.update(baseline=name, scoring_seconds=time.perf_counter() - started)
    return pd.concat(frames, ignore_index=True), record


def precomputed_top_k(
    lists: pd.DataFrame,
    split: str,
    buyers: np.ndarray,
    width: int | None = None,
    column: str = "rows",
) -> dict[str, np.ndarray]:
    """The strong baselines' top rows for ``buyers`` (in order) from ``strong_baselines``.

    ``width``: how many of each list (None: max(k), the baseline itself; 0: all of it, the
    ranking stage's candidates). ``column="scores"``: their scores instead (NaN past a
    list's end; a baseline written without scores is left out). A baseline missing any of
    the buyers is left out (its lists are from another split).
    """
    width = max(contract.RECALL_KS) if width is None else width
    out = {}
    if lists is None or lists.empty or column not in lists.columns:
        return out
    rows = column == "rows"
    for name, frame in lists[lists["split"] == split].groupby("baseline"):
        by_buyer = dict(zip(frame[contract.BUYER_ID], frame[column], strict=True))
        wanted = [str(b) for b in buyers]
        if not all(b in by_buyer for b in wanted):
            log.warning("strong baseline %s has no lists for some %s buyers; left out", name, split)
            continue
        longest = max((len(r) for r in by_buyer.values()), default=0)
        cut = min(width, longest) if width else longest
        top = np.full((len(wanted), cut), -1 if rows else np.nan, np.int64 if rows else np.float32)
        for i, b in enumerate(wanted):
            row = np.asarray(by_buyer[b])[:cut]
            top[i, : len(row)] = row
        out[str(name)] = top
    return out
