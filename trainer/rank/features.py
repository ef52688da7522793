"""The ranking stage's candidates and their dense (buyer, product) features.

A query's candidates are the retrieval stage's top-k (the served model's lists, with their
scores) and the domain's strong baseline's longer list (``contract.STRONG_LIST_K``, from
ingest). Each (query, candidate) row gets features computed from the interactions before the
split only, as of the split's start (``as_of``):

- where the candidate came from: its rank and score in the retrieval list (the score's gap to
  the buyer's best), its rank (absent: one past the list's end) and score in the strong
  baseline's list;
- the buyer and the product together: on how many distinct days the buyer bought it, days
  since the first and the last of them, the share of the buyer's purchase days that hold it,
  and how "due" it is (days since the last purchase over the product's usual re-purchase gap,
  Li et al.'s time-aware repeat signal in the TOIS 2023 reality check);
- the buyer: purchase days, days since the last one, the span from the first, the usual gap
  between purchase days and how due the next one is;
- the product: the share of buyers who bought it, over all the history and over its last
  ``window`` and ``window / 4`` days (its recent demand) and the recent share over the
  all-time one (its trend), the share of its buyers who bought it again on a later day, and
  its median re-purchase gap.

Frequency ordering is one of these features (``buyer_item_days``), so the stage can fall back
to it; what each feature is worth is fit on validation (trainer/rank/stage.py), never set per
dataset. Popularity is a share of buyers (not a count), so the figures fit on the validation
window's history mean the same on the longer history the test window is ranked from. Every
frame is built from index arrays, never a dense (query x catalog) matrix: its size is the
candidates', whatever the catalog's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trainer import contract
from trainer.retrieval import catalog_index

SECONDS_PER_DAY = 86_400
QUERY = "query"  # the query's position in its split's buyers
ROW = "row"  # the candidate's catalog row
LABEL = "label"  # bought in the split (only where the split's targets are known)

FEATURES: tuple[str, ...] = (
    "retrieval_rank",
    "retrieval_score",
    "retrieval_gap",
    "strong_rank",
    "strong_score",
    "seen",
    "buyer_item_days",
    "days_since_item",
    "days_since_first_item",
    "item_share_of_days",
    "item_due",
    "buyer_days",
    "days_since_buyer",
    "buyer_span_days",
    "buyer_gap_days",
    "buyer_due",
    "item_buyer_share",
    "item_recent_share",
    "item_latest_share",
    "item_trend",
    "item_repeat_rate",
    "item_gap_days",
)


@dataclasses.dataclass
class Candidates:
    """One split's candidate lists: the retrieval stage's and the strong baseline's."""

    buyers: np.ndarray  # query order
    retrieval_rows: np.ndarray  # queries x k catalog rows, best first; below 0: empty slot
    retrieval_scores: np.ndarray  # the same shape
    strong_rows: np.ndarray | None = None  # queries x width, or None (no strong baseline)
    strong_scores: np.ndarray | None = None  # the same shape, or None (written without them)

    def take(self, queries: np.ndarray) -> Candidates:
        """The lists of ``queries`` (positions), in that order."""

        def rows(a):
            return None if a is None else a[queries]

        return Candidates(
            self.buyers[queries],
            self.retrieval_rows[queries],
            self.retrieval_scores[queries],
            rows(self.strong_rows),
            rows(self.strong_scores),
        )


def window_days(split: pd.DataFrame) -> int:
    """The recency window: the validation split's length in days (at least 1).

    The same window serves the validation and the test frames, so a feature fit on one means
    the same on the other.
    """
    if split.empty:
        return 1
    ts = split[contract.TIMESTAMP].to_numpy(np.int64)
    return max(1, int(np.ceil((ts.max() - ts.min() + 1) / SECONDS_PER_DAY)))


def _long(rows: np.ndarray, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """(query, row, rank, values...) of a queries x width list, empty slots dropped."""
    queries, places = np.nonzero(rows >= 0)
    out = {QUERY: queries, ROW: rows[queries, places].astype(np.int64), "rank": places + 1.0}
    out.update({name: v[queries, places] for name, v in values.items()})
    return pd.DataFrame(out)


@dataclasses.dataclass
class History:
    """One split's history aggregates, computed once (the frames of its chunks share them)."""

    today: int  # the split's start, in days
    pair: pd.DataFrame  # per (buyer, row): purchase days, first and last day
    buyer: pd.DataFrame  # per buyer (index): purchase days, first and last day
    item: pd.DataFrame  # per row (index): the product's features


def history(before: pd.DataFrame, catalog: pd.DataFrame, as_of: int, window: int) -> History:
    """The aggregates of the interactions before a split.

    Args:
        before: The interactions before the split (train for validation, train + eval for
            test); nothing later is read.
        catalog: The retrieval catalog (the lists' rows index it).
        as_of: The split's start (epoch seconds): "days since" counts from here.
        window: The recency window in days (``window_days`` of the validation split).
    """
    days = _days(before, catalog)
    today = as_of // SECONDS_PER_DAY
    pair = days.groupby([contract.BUYER_ID, ROW])["day"].agg(["size", "min", "max"]).reset_index()
    buyer = days.groupby(contract.BUYER_ID)["day"].agg(["nunique", "min", "max"])
    buyers = max(days[contract.BUYER_ID].nunique(), 1)

    def share(since: int) -> pd.Series:
        recent = days[days["day"] >= today - since]
        active = max(recent[contract.BUYER_ID].nunique(), 1)
        return recent.groupby(ROW)[contract.BUYER_ID].nunique() / active

    again = pair["size"] >= 2
    gap = ((pair["max"] - pair["min"]) / (pair["size"] - 1)).where(again)
    item = pd.DataFrame(
        {
            "item_buyer_share": pair.groupby(ROW).size() / buyers,
            "item_repeat_rate": again.groupby(pair[ROW]).mean(),
            "item_gap_days": gap.groupby(pair[ROW]).median(),
        }
    )
    item["item_recent_share"] = share(window)
    item["item_latest_share"] = share(max(1, window // 4))
    return History(today, pair, buyer, item)


def candidate_frame(candidates: Candidates, past: History) -> pd.DataFrame:
    """One row per distinct (query, candidate), with ``FEATURES``.

    Args:
        candidates: The split's lists (or some of its queries', ``Candidates.take``).
        past: The split's ``history``.
    """
    width = candidates.retrieval_rows.shape[1]
    retrieval = _long(candidates.retrieval_rows, {"score": candidates.retrieval_scores})
    retrieval = retrieval.drop_duplicates([QUERY, ROW])
    best = retrieval.groupby(QUERY)["score"].transform("max")
    retrieval = retrieval.assign(gap=retrieval["score"] - best)
    frame = retrieval.rename(
        columns={"rank": "retrieval_rank", "score": "retrieval_score", "gap": "retrieval_gap"}
    )
    if candidates.strong_rows is not None and candidates.strong_rows.size:
        scores = candidates.strong_scores
        if scores is None:
            scores = np.full(candidates.strong_rows.shape, np.nan)
        strong = _long(candidates.strong_rows, {"strong_score": scores})
        strong = strong.drop_duplicates([QUERY, ROW]).rename(columns={"rank": "strong_rank"})
        frame = frame.merge(strong, how="outer")
        frame["strong_rank"] = frame["strong_rank"].fillna(candidates.strong_rows.shape[1] + 1)
    else:
        frame["strong_rank"] = np.nan
        frame["strong_score"] = np.nan
    frame["retrieval_rank"] = frame["retrieval_rank"].fillna(width + 1)
    frame = frame.sort_values([QUERY, ROW], ignore_index=True)
    buyers = np.asarray(candidates.buyers).astype(str)
    frame[contract.BUYER_ID] = buyers[frame[QUERY].to_numpy()]
    return _with_history(frame, past)


def _days(before: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    index = catalog_index(catalog)
    known = before[before[contract.PRODUCT_ID].isin(index)]
    return pd.DataFrame(
        {
            contract.BUYER_ID: known[contract.BUYER_ID].astype(str).to_numpy(),
            ROW: known[contract.PRODUCT_ID].map(index).to_numpy(np.int64),
            "day": known[contract.TIMESTAMP].to_numpy(np.int64) // SECONDS_PER_DAY,
        }
    ).drop_duplicates()


def _with_history(frame: pd.DataFrame, past: History) -> pd.DataFrame:
    pair, buyer, item, today = past.pair, past.buyer, past.item, past.today
    frame = frame.merge(
        pair.rename(columns={"size": "buyer_item_days", "min": "first", "max": "last"}),
        on=[contract.BUYER_ID, ROW],
        how="left",
    )
    frame = frame.merge(
        buyer.rename(columns={"nunique": "buyer_days", "min": "b_first", "max": "b_last"}),
        left_on=contract.BUYER_ID,
        right_index=True,
        how="left",
    )
    frame = frame.merge(item, left_on=ROW, right_index=True, how="left")
    frame["seen"] = frame["buyer_item_days"].notna().astype(np.float64)
    frame["days_since_item"] = today - frame["last"]
    frame["days_since_first_item"] = today - frame["first"]
    frame["item_share_of_days"] = frame["buyer_item_days"] / frame["buyer_days"]
    frame["item_due"] = frame["days_since_item"] / frame["item_gap_days"]
    frame["days_since_buyer"] = today - frame["b_last"]
    frame["buyer_span_days"] = frame["b_last"] - frame["b_first"]
    frame["buyer_gap_days"] = (frame["buyer_span_days"] / (frame["buyer_days"] - 1)).where(
        frame["buyer_days"] > 1
    )
    frame["buyer_due"] = frame["days_since_buyer"] / frame["buyer_gap_days"]
    for name in ("item_buyer_share", "item_recent_share", "item_latest_share"):
        frame[name] = frame[name].fillna(0.0)
    # Recent demand against all-time demand (a product never bought before has NaN).
    frame["item_trend"] = frame["item_recent_share"] / frame["item_buyer_share"].where(
        frame["item_buyer_share"] > 0
    )
    return frame[[QUERY, ROW, contract.BUYER_ID, *FEATURES]]


def with_labels(frame: pd.DataFrame, positives: list[np.ndarray]) -> pd.DataFrame:
    """The frame with ``LABEL``: the candidate is among its query's positives."""
    queries = np.repeat(np.arange(len(positives)), [len(p) for p in positives])
    rows = np.concatenate([np.asarray(p, np.int64) for p in positives]) if positives else []
    bought = pd.DataFrame({QUERY: queries, ROW: np.asarray(rows, np.int64), LABEL: True})
    out = frame.merge(bought, on=[QUERY, ROW], how="left")
    out[LABEL] = out[LABEL].astype("boolean").fillna(False).astype(bool)
    return out
