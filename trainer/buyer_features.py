"""Point-in-time buyer features: purchase history and recency / frequency / monetary aggregates.

Every value describes the buyer strictly before a moment: for a training row, before that
row's time (so an invoice never sees itself, and nothing from a later split leaks in); for
an evaluation query, before the evaluated split starts. Both come from the same function.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainer import config as cfg

HISTORY = cfg.HISTORY  # space-joined product ids, most bought first, then most recent
RECENCY_DAYS = cfg.RECENCY_DAYS  # days since the buyer's previous purchase (-1: none)
FREQUENCY = cfg.FREQUENCY  # distinct earlier purchase moments (invoices)
MONETARY = cfg.MONETARY  # earlier spend, sum of quantity x price
NUMERIC = (RECENCY_DAYS, FREQUENCY, MONETARY)
COLUMNS = (HISTORY, *NUMERIC)
DEFAULT_MAX_HISTORY = 50
_DAY = 86400.0


def _states(buyer_rows: pd.DataFrame, max_history: int):
    """Yields (timestamp, history, recency_days, frequency, monetary) before each moment."""
    counts: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    spend, invoices, previous = 0.0, 0, None
    ts = buyer_rows[cfg.TIMESTAMP].to_numpy()
    products = buyer_rows[cfg.PRODUCT_ID].to_numpy()
    amounts = (buyer_rows[cfg.QUANTITY] * buyer_rows[cfg.PRICE]).to_numpy(np.float64)
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


def add_buyer_features(frame: pd.DataFrame, max_history: int = DEFAULT_MAX_HISTORY) -> pd.DataFrame:
    """Adds the point-in-time columns to every row (each row sees only earlier moments)."""
    parts = []
    for buyer, rows in frame.sort_values(cfg.TIMESTAMP, kind="stable").groupby(
        cfg.BUYER_ID, sort=False
    ):
        states = pd.DataFrame(list(_states(rows, max_history)), columns=[cfg.TIMESTAMP, *COLUMNS])
        states[cfg.BUYER_ID] = buyer
        parts.append(states)
    states = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[cfg.TIMESTAMP, *COLUMNS, cfg.BUYER_ID])
    )
    out = frame.merge(states, on=[cfg.BUYER_ID, cfg.TIMESTAMP], how="left", validate="m:1")
    return _typed(out)


def buyer_state_as_of(
    history: pd.DataFrame, buyers, as_of: int, max_history: int = DEFAULT_MAX_HISTORY
) -> pd.DataFrame:
    """One row per buyer: the point-in-time columns as of ``as_of`` (epoch seconds).

    ``history`` must hold only rows before ``as_of``; buyers without any get empty values.
    """
    rows = []
    wanted = set(buyers)
    for buyer, group in (
        history[history[cfg.BUYER_ID].isin(wanted)]
        .sort_values(cfg.TIMESTAMP, kind="stable")
        .groupby(cfg.BUYER_ID, sort=False)
    ):
        marker = group.iloc[:1].assign(**{cfg.TIMESTAMP: as_of, cfg.QUANTITY: 0.0})
        *_, last = _states(pd.concat([group, marker]), max_history)
        rows.append((buyer, *last[1:]))
    state = pd.DataFrame(rows, columns=[cfg.BUYER_ID, *COLUMNS]).set_index(cfg.BUYER_ID)
    state = state.reindex(list(buyers))
    state[HISTORY] = state[HISTORY].fillna("")
    state[RECENCY_DAYS] = state[RECENCY_DAYS].fillna(-1.0)
    state[[FREQUENCY, MONETARY]] = state[[FREQUENCY, MONETARY]].fillna(0.0)
    return _typed(state.reset_index())


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame[HISTORY] = frame[HISTORY].fillna("").astype(str)
    for name in NUMERIC:
        frame[name] = frame[name].astype("float32")
    return frame
