"""Point-in-time buyer features: a query sees only what happened before its moment."""

import numpy as np
import pandas as pd

from trainer import contract, inputs

DAY = 86400


def _history() -> pd.DataFrame:
    rows = [  # buyer, product, day, quantity, price, country
        ("a", "p1", 0, 2.0, 1.0, "UK"),
        ("a", "p2", 0, 1.0, 3.0, "UK"),
        ("a", "p1", 2, 1.0, 1.0, "FR"),
        ("b", "p3", 1, 4.0, 0.5, "DE"),
    ]
    return pd.DataFrame(
        {
            contract.BUYER_ID: [r[0] for r in rows],
            contract.PRODUCT_ID: [r[1] for r in rows],
            contract.TIMESTAMP: np.array([r[2] * DAY for r in rows], np.int64),
            contract.QUANTITY: [r[3] for r in rows],
            contract.PRICE: [r[4] for r in rows],
            contract.COUNTRY: [r[5] for r in rows],
        }
    )


def test_queries_are_asked_when_the_split_starts_but_after_the_history():
    history = _history()
    later = pd.DataFrame({contract.TIMESTAMP: [10 * DAY, 12 * DAY]})
    assert inputs.as_of_time(history, later) == 10 * DAY
    overlapping = pd.DataFrame({contract.TIMESTAMP: [DAY]})
    assert inputs.as_of_time(history, overlapping) == 2 * DAY + 1
    assert inputs.as_of_time(history, later.iloc[:0]) == 2 * DAY + 1


def test_query_frame_holds_each_buyers_state_as_of_the_moment():
    queries = inputs.query_frame(_history(), np.array(["a", "b"], object), 4 * DAY, max_history=50)
    assert queries[contract.BUYER_ID].tolist() == ["a", "b"]
    a = queries.iloc[0]
    # p1 bought twice (most first), then p2; the latest row gives the static country.
    assert a[contract.HISTORY] == "p1 p2" and a[contract.COUNTRY] == "FR"
    assert a[contract.RECENCY_DAYS] == 2.0 and a[contract.FREQUENCY] == 2.0
    assert a[contract.MONETARY] == 2 * 1.0 + 1 * 3.0 + 1 * 1.0
    assert (queries[contract.TIMESTAMP] == 4 * DAY).all()
    b = queries.iloc[1]
    assert b[contract.HISTORY] == "p3" and b[contract.RECENCY_DAYS] == 3.0
