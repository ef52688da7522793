"""Point-in-time buyer features: purchase history and recency / frequency / monetary aggregates.

Every value describes the buyer strictly before a moment: for a training row, before that
row's time (so an invoice never sees itself, and nothing from a later split leaks in); for
an evaluation query, before the evaluated split starts. Both come from the same function;
``query_frame`` builds the raw query rows of an evaluated split from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer import contract

# The derived columns, in contract order: the history string, then the numeric aggregates.
COLUMNS = contract.DERIVED_COLUMNS
NUMERIC = tuple(c for c in COLUMNS if contract.RAW_COLUMN_TYPES[c] == contract.FLOAT)
_DAY = 86400.0


def _states(buyer_rows: pd.DataFrame, max_history: int):
    """Yields (timestamp, history, recency_days, frequency, monetary) before each moment."""
    counts: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    spend, invoices, previous = 0.0, 0, None
    ts = buyer_rows[contract.TIMESTAMP].to_numpy()
    products = buyer_rows[contract.PRODUCT_ID].to_numpy()
    amounts = (buyer_rows[contract.QUANTITY] * buyer_rows[contract.PRICE]).to_numpy(np.float64)
    bounds = np.flatnonzero(np.diff(ts)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(ts)], strict=True):
        moment = int(ts[start])
        ranked = sorted(counts, key=lambda p: (-counts[p], -last_seen[p]))[:max_history]
        recency = (moment - previous) / _DAY if previous is not None else -1.0
        yield moment, " ".join(ranked), recency, float(invoices), spend
        for i in range(start, stop):
            counts[products[i]] = counts.get(products[i], 0) + 1
            last_seen[products[i]] = moment
            spend += amounts[i]
        invoices += 1
        previous = moment


def add_buyer_features(frame: pd.DataFrame, max_history: int) -> pd.DataFrame:
    """Adds the point-in-time columns to every row (each row sees only earlier moments)."""
    parts = []
    for buyer, rows in frame.sort_values(contract.TIMESTAMP, kind="stable").groupby(
        contract.BUYER_ID, sort=False
    ):
        states = pd.DataFrame(
            list(_states(rows, max_history)), columns=[contract.TIMESTAMP, *COLUMNS]
        )
        states[contract.BUYER_ID] = buyer
        parts.append(states)
    states = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[contract.TIMESTAMP, *COLUMNS, contract.BUYER_ID])
    )
    out = frame.merge(
        states, on=[contract.BUYER_ID, contract.TIMESTAMP], how="left", validate="m:1"
    )
    return _typed(out)


def buyer_state_as_of(history: pd.DataFrame, buyers, as_of: int, max_history: int) -> pd.DataFrame:
    """One row per buyer: the point-in-time columns as of ``as_of`` (epoch seconds).

    ``history`` must hold only rows before ``as_of``; buyers without any get empty values.
    """
    rows = []
    wanted = set(buyers)
    for buyer, group in (
        history[history[contract.BUYER_ID].isin(wanted)]
        .sort_values(contract.TIMESTAMP, kind="stable")
        .groupby(contract.BUYER_ID, sort=False)
    ):
        marker = group.iloc[:1].assign(**{contract.TIMESTAMP: as_of, contract.QUANTITY: 0.0})
        *_, last = _states(pd.concat([group, marker]), max_history)
        rows.append((buyer, *last[1:]))
    state = pd.DataFrame(rows, columns=[contract.BUYER_ID, *COLUMNS]).set_index(contract.BUYER_ID)
    state = state.reindex(list(buyers))
    state[contract.HISTORY] = state[contract.HISTORY].fillna("")
    state[contract.RECENCY_DAYS] = state[contract.RECENCY_DAYS].fillna(-1.0)
    state[[contract.FREQUENCY, contract.MONETARY]] = state[
        [contract.FREQUENCY, contract.MONETARY]
    ].fillna(0.0)
    return _typed(state.reset_index())


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame[contract.HISTORY] = frame[contract.HISTORY].fillna("").astype(str)
    for name in NUMERIC:
        frame[name] = frame[name].astype("float32")
    return frame


def as_of_time(history: pd.DataFrame, split: pd.DataFrame) -> int:
    """When queries of an evaluated split are asked: its start, or just after the history."""
    after_history = int(history[contract.TIMESTAMP].max()) + 1
    start = int(split[contract.TIMESTAMP].min()) if len(split) else after_history
    return max(start, after_history)


def query_frame(
    history: pd.DataFrame,
    buyers: np.ndarray,
    as_of: int,
    max_history: int,
) -> pd.DataFrame:
    """Raw buyer features of each query as of ``as_of``, from interactions before it only.

    Static columns (country, ...) come from the buyer's latest row; the point-in-time columns
    (history, recency / frequency / monetary) are computed as of ``as_of``.
    """
    latest = (
        history.sort_values(contract.TIMESTAMP, kind="stable").groupby(contract.BUYER_ID).tail(1)
    )
    frame = latest.set_index(contract.BUYER_ID).loc[list(buyers)].reset_index()
    state = buyer_state_as_of(history, buyers, as_of, max_history)
    for name in COLUMNS:
        frame[name] = state[name].to_numpy()
    frame[contract.TIMESTAMP] = np.int64(as_of)
    return frame
