"""BigQuery SQL for ingest, generated from the experiment config (standard library only).

The statements do in BigQuery what the file path (trainer/ingest/files.py) does in pandas, with the
same rules and the same results row for row:

- ``checks``: one small row: rows read, rows dropped per reason (each row counted under its
  first failing reason, in the file path's order), and the parse counts behind "most values
  of a column do not parse".
- ``prepare``: the cleaned, typed rows with the point-in-time buyer columns (history,
  recency, frequency, monetary: each row sees only the buyer's earlier moments) and the
  split of each row; run with a destination table that the statements below read.
- ``split_stats``: rows, buyers, products, known buyers / products and time range per split.
- ``catalog``: one row per product seen in train (latest description, median price, count).
- ``export``: one split's rows as Parquet files under a Cloud Storage prefix.

Only the last three read the prepared table; only ``checks``, ``split_stats`` and
``catalog`` send rows back to the step (one row, three rows, one row per product).

The history column ranks a buyer's earlier products by count, then by last purchase, then by
first purchase, then by the source's row order (``dataset.bigquery.order_column``, else the
product id), as ``trainer/inputs/buyer_features.py`` does walking the rows in order. The state of a
product before a moment is its latest purchase moment before it: a join of each moment with
the (buyer, product) purchase moments it falls after, never a product list per row.
"""

from __future__ import annotations

import dataclasses

from trainer import config as cfg
from trainer import contract

__all__ = ["IngestSql", "SPLIT", "ORDER", "TIMESTAMP_COLUMN"]

SPLIT = "_split"  # the split of each prepared row
ORDER = "_ord"  # what orders a buyer's rows of one moment (not exported)
TIMESTAMP_COLUMN = "_ts"
_DAY_SECONDS = 86400
# "17850.0" -> "17850", as trainer/ingest/files.py does (a BigQuery raw string literal).
_FLOAT_ID = r"r'^(\d+)\.0+$'"

# The columns of an exported split, in the order the file path writes them.
OUTPUT_COLUMNS = (
    *contract.SOURCE_STRING_COLUMNS,
    *contract.SOURCE_FLOAT_COLUMNS,
    contract.TIMESTAMP,
    *contract.DERIVED_COLUMNS,
)


def quote_name(name: str) -> str:
    """A BigQuery identifier in backticks (a column or a table path)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    """A BigQuery string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclasses.dataclass(frozen=True)
class IngestSql:
    """The statements of one experiment's BigQuery ingest.

    Args:
        dataset: The validated dataset config (a ``bq://`` source).
        history_length: Products kept in the history column.
    """

    dataset: cfg.Dataset
    history_length: int

    # -- the source and its cleaning: common to ``checks`` and ``prepare`` ------------------

    def _from(self) -> str:
        query = self.dataset.bigquery.query
        if query:
            return f"({query})"
        return quote_name(self.dataset.source.removeprefix(cfg.BIGQUERY_PREFIX))

    def _source(self) -> str:
        # Every mapped column as a string, as the file path reads a CSV.
        columns = self.dataset.columns
        fields = [
            f"CAST({quote_name(columns[name])} AS STRING) AS {name}"
            for name in contract.SOURCE_COLUMNS
            if name in columns
        ]
        order = self.dataset.bigquery.order_column
        if order:
            fields.append(f"{quote_name(order)} AS {ORDER}")
        else:  # a table has no row order: ties follow the product id
            fields.append(f"CAST({quote_name(columns[contract.PRODUCT_ID])} AS STRING) AS {ORDER}")
        if contract.TIMESTAMP in columns and self.dataset.timestamp_format == cfg.NATIVE_TIMESTAMP:
            # Read the typed column itself: a TIMESTAMP cast to STRING carries a zone suffix.
            stamp = quote_name(columns[contract.TIMESTAMP])
            fields.append(f"UNIX_SECONDS(SAFE_CAST({stamp} AS TIMESTAMP)) AS {TIMESTAMP_COLUMN}")
        return "SELECT\n    " + ",\n    ".join(fields) + f"\n  FROM {self._from()}"

    def _timestamp(self) -> str:
        # Seconds since the epoch, NULL where the value does not parse.
        fmt, raw = self.dataset.timestamp_format, contract.TIMESTAMP
        if fmt == cfg.NATIVE_TIMESTAMP:
            return TIMESTAMP_COLUMN
        unit = cfg.EPOCH_FORMATS.get(fmt)
        if unit is None:
            return f"UNIX_SECONDS(SAFE.PARSE_TIMESTAMP({quote_string(fmt)}, {raw}))"
        per_second = 1000 if unit == "ms" else 1
        number = f"SAFE_CAST({raw} AS FLOAT64)"
        return (
            f"IF(IS_NAN({number}) OR IS_INF({number}), NULL, "
            f"SAFE_CAST(FLOOR({number} / {per_second}) AS INT64))"
        )

    def _parsed(self) -> str:
        columns = self.dataset.columns
        fields = ["*", f"{self._timestamp()} AS _time"]
        fields += [
            f"SAFE_CAST({n} AS FLOAT64) AS _{n}"
            for n in contract.SOURCE_FLOAT_COLUMNS
            if n in columns
        ]
        return "SELECT " + ", ".join(fields) + " FROM source"

    def _parsed_columns(self) -> list[str]:
        # The columns with a parse check: the timestamp and the number columns it maps.
        columns = self.dataset.columns
        return [contract.TIMESTAMP, *(n for n in contract.SOURCE_FLOAT_COLUMNS if n in columns)]

    def drop_reasons(self) -> list[tuple[str, str]]:
        """(reason, condition) in the order the file path checks them; first match counts."""
        columns, rules = self.dataset.columns, self.dataset.cleaning
        reasons = [
            (contract.drop_missing(n), f"{n} IS NULL OR TRIM({n}) = ''")
            for n in contract.REQUIRED_COLUMNS
        ]
        time, *numbers = self._parsed_columns()
        reasons.append((contract.drop_unparsable(time), "_time IS NULL"))
        reasons += [(contract.drop_unparsable(n), f"_{n} IS NULL OR IS_NAN(_{n})") for n in numbers]
        if contract.QUANTITY in columns and rules.min_quantity is not None:
            reasons.append(
                (
                    contract.drop_at_most(contract.QUANTITY, rules.min_quantity),
                    f"_{contract.QUANTITY} <= {float(rules.min_quantity)!r}",
                )
            )
        if contract.PRICE in columns and rules.min_price is not None:
            reasons.append(
                (
                    contract.drop_at_most(contract.PRICE, rules.min_price),
                    f"_{contract.PRICE} <= {float(rules.min_price)!r}",
                )
            )
        if rules.drop_transaction_prefixes and contract.TRANSACTION_ID in columns:
            starts = " OR ".join(
                f"STARTS_WITH(COALESCE({contract.TRANSACTION_ID}, ''), {quote_string(p)})"
                for p in rules.drop_transaction_prefixes
            )
            reasons.append((contract.DROP_CANCELLED, starts))
        return reasons

    def _labelled(self) -> str:
        cases = "\n".join(
            f"      WHEN {condition} THEN {quote_string(reason)}"
            for reason, condition in self.drop_reasons()
        )
        return f"SELECT *,\n    CASE\n{cases}\n    END AS _drop\n  FROM parsed"

    def _cleaning_ctes(self) -> str:
        return (
            f"WITH source AS (\n  {self._source()}\n),\n"
            f"parsed AS (\n  {self._parsed()}\n),\n"
            f"labelled AS (\n  {self._labelled()}\n)"
        )

    # -- statements --------------------------------------------------------------------------

    def checks(self) -> str:
        """One row: rows_read, one count per drop reason, and the parse counts.

        ``seen_<column>`` counts the non-empty values that reached the column's parse check,
        ``failed_<column>`` those that did not parse (trainer/sources/read.py ParseCheck).
        """
        reasons = self.drop_reasons()
        fields = ["COUNT(*) AS rows_read"]
        # A reason may not be an identifier ("quantity_le_0.5"): every alias is quoted.
        fields += [f"COUNTIF(_drop = {quote_string(r)}) AS {quote_name(r)}" for r, _ in reasons]
        reached = []
        parsed = {contract.drop_unparsable(c): c for c in self._parsed_columns()}
        for reason, condition in reasons:
            name = parsed.get(reason)
            if name:
                before = " AND ".join(f"NOT ({c})" for c in reached) or "TRUE"
                present = f"{name} IS NOT NULL AND ({before})"
                fields.append(f"COUNTIF({present}) AS seen_{name}")
                fields.append(f"COUNTIF({present} AND ({condition})) AS failed_{name}")
            reached.append(condition)
        return f"{self._cleaning_ctes()}\nSELECT\n  " + ",\n  ".join(fields) + "\nFROM labelled"

    def failing_samples(self, column: str, limit: int = 2) -> str:
        """Up to ``limit`` source values of a column that fail to parse (for the error)."""
        reasons = self.drop_reasons()
        index = next(i for i, (r, _) in enumerate(reasons) if r == contract.drop_unparsable(column))
        before = " AND ".join(f"NOT ({c})" for _, c in reasons[:index]) or "TRUE"
        return (
            f"{self._cleaning_ctes()}\nSELECT DISTINCT {column} AS value FROM labelled\n"
            f"WHERE {column} IS NOT NULL AND ({before}) AND ({reasons[index][1]})\n"
            f"LIMIT {int(limit)}"
        )

    def _typed(self) -> str:
        columns = self.dataset.columns
        fields = []
        for name in contract.SOURCE_STRING_COLUMNS:
            value = f"COALESCE(TRIM({name}), '')" if name in columns else "''"
            if name in (contract.BUYER_ID, contract.PRODUCT_ID):
                value = f"REGEXP_REPLACE({value}, {_FLOAT_ID}, r'\\1')"
            fields.append(f"{value} AS {name}")
        for name in contract.SOURCE_FLOAT_COLUMNS:
            fields.append(f"{f'_{name}' if name in columns else '0.0'} AS {name}")
        fields += [f"_time AS {contract.TIMESTAMP}", ORDER]
        return "SELECT\n    " + ",\n    ".join(fields) + "\n  FROM labelled\n  WHERE _drop IS NULL"

    def _split_case(self) -> str:
        rule, ts = self.dataset.split, contract.TIMESTAMP
        if rule.strategy == "strict_time":
            train_end, eval_end = rule.time_bounds()
            return (
                f"CASE WHEN r.{ts} < {train_end} THEN 'train' "
                f"WHEN r.{ts} < {eval_end} THEN 'eval' ELSE 'test' END"
            )
        # buyer_holdout: trainer/ingest/files.py uniform_draws, the first 52 bits of MD5(key:seed).
        test_cut = 1.0 - rule.test_fraction
        eval_cut = test_cut - rule.eval_fraction
        digest = f"TO_HEX(MD5(CONCAT(r.{contract.BUYER_ID}, {quote_string(f':{rule.seed}')})))"
        draw = f"CAST(CONCAT('0x', SUBSTR({digest}, 1, 13)) AS INT64) / {float(1 << 52)!r}"
        return (
            f"CASE WHEN {draw} < {eval_cut!r} THEN 'train' "
            f"WHEN {draw} < {test_cut!r} THEN 'eval' ELSE 'test' END"
        )

    def prepare(self) -> str:
        """Cleaned, typed rows with the buyer columns and ``_split``: run into a table."""
        b, p, ts = contract.BUYER_ID, contract.PRODUCT_ID, contract.TIMESTAMP
        q, price = contract.QUANTITY, contract.PRICE
        buyer_order = f"PARTITION BY {b} ORDER BY {ts}"
        pair_order = f"PARTITION BY {b}, {p} ORDER BY {ts}"
        return f"""{self._cleaning_ctes()},
kept AS (
  {self._typed()}
),
-- A buyer's purchase moments (one per distinct time) and the state before each.
moments AS (
  SELECT {b}, {ts}, SUM({q} * {price}) AS spend FROM kept GROUP BY {b}, {ts}
),
moment_state AS (
  SELECT {b}, {ts},
    COALESCE(({ts} - LAG({ts}) OVER ({buyer_order})) / {_DAY_SECONDS}, -1.0) AS recency_days,
    ROW_NUMBER() OVER ({buyer_order}) - 1 AS frequency,
    COALESCE(SUM(spend) OVER ({buyer_order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
      0.0) AS monetary
  FROM moments
),
-- Each (buyer, product) purchase moment: the product's count up to it, and the next one.
purchases AS (
  SELECT {b}, {p}, {ts}, COUNT(*) AS n, MIN({ORDER}) AS first_ord
  FROM kept GROUP BY {b}, {p}, {ts}
),
product_state AS (
  SELECT {b}, {p}, {ts} AS seen,
    SUM(n) OVER ({pair_order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS bought,
    LEAD({ts}) OVER ({pair_order}) AS next_seen,
    MIN({ts}) OVER (PARTITION BY {b}, {p}) AS first_seen,
    FIRST_VALUE(first_ord) OVER ({pair_order}) AS first_ord
  FROM purchases
),
-- Before a moment, a product's state is its latest purchase moment before it.
ranked AS (
  SELECT m.{b}, m.{ts}, s.{p},
    ROW_NUMBER() OVER (PARTITION BY m.{b}, m.{ts}
      ORDER BY s.bought DESC, s.seen DESC, s.first_seen, s.first_ord) AS rank_in_history
  FROM moments AS m
  JOIN product_state AS s
    ON s.{b} = m.{b} AND s.seen < m.{ts} AND (s.next_seen IS NULL OR s.next_seen >= m.{ts})
),
history AS (
  SELECT {b}, {ts}, STRING_AGG({p}, ' ' ORDER BY rank_in_history) AS history
  FROM ranked WHERE rank_in_history <= {int(self.history_length)}
  GROUP BY {b}, {ts}
)
SELECT r.*,
  COALESCE(h.history, '') AS {contract.HISTORY},
  s.recency_days AS {contract.RECENCY_DAYS},
  CAST(s.frequency AS FLOAT64) AS {contract.FREQUENCY},
  s.monetary AS {contract.MONETARY},
  {self._split_case()} AS {SPLIT}
FROM kept AS r
JOIN moment_state AS s ON s.{b} = r.{b} AND s.{ts} = r.{ts}
LEFT JOIN history AS h ON h.{b} = r.{b} AND h.{ts} = r.{ts}"""

    @staticmethod
    def split_stats(table: str) -> str:
        """Per split: rows, buyers, products, those train knows, first and last time."""
        b, p, ts = contract.BUYER_ID, contract.PRODUCT_ID, contract.TIMESTAMP
        t = quote_name(table)
        return f"""WITH train_buyers AS (SELECT DISTINCT {b} FROM {t} WHERE {SPLIT} = 'train'),
train_products AS (SELECT DISTINCT {p} FROM {t} WHERE {SPLIT} = 'train'),
per_split AS (
  SELECT {SPLIT}, COUNT(*) AS row_count, MIN({ts}) AS first_time, MAX({ts}) AS last_time
  FROM {t} GROUP BY {SPLIT}
),
buyers AS (
  SELECT x.{SPLIT}, COUNT(*) AS buyers, COUNTIF(k.{b} IS NOT NULL) AS known_buyers
  FROM (SELECT DISTINCT {SPLIT}, {b} FROM {t}) AS x
  LEFT JOIN train_buyers AS k ON k.{b} = x.{b} GROUP BY x.{SPLIT}
),
products AS (
  SELECT x.{SPLIT}, COUNT(*) AS products, COUNTIF(k.{p} IS NOT NULL) AS known_products
  FROM (SELECT DISTINCT {SPLIT}, {p} FROM {t}) AS x
  LEFT JOIN train_products AS k ON k.{p} = x.{p} GROUP BY x.{SPLIT}
)
SELECT per_split.{SPLIT} AS split_name, row_count, first_time, last_time, buyers, known_buyers,
  products, known_products
FROM per_split
JOIN buyers ON buyers.{SPLIT} = per_split.{SPLIT}
JOIN products ON products.{SPLIT} = per_split.{SPLIT}"""

    @staticmethod
    def catalog(table: str) -> str:
        """One row per product seen in train, as trainer/ingest/output.py build_catalog."""
        b, p, ts = contract.BUYER_ID, contract.PRODUCT_ID, contract.TIMESTAMP
        d, price = contract.DESCRIPTION, contract.PRICE
        t = quote_name(table)
        return f"""WITH train AS (SELECT * FROM {t} WHERE {SPLIT} = 'train'),
latest AS (
  SELECT {p}, {d} FROM train WHERE {d} != ''
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {p} ORDER BY {ts} DESC, {b} DESC, {ORDER} DESC) = 1
),
prices AS (
  SELECT DISTINCT {p}, PERCENTILE_CONT({price}, 0.5) OVER (PARTITION BY {p}) AS {price}
  FROM train
),
counts AS (SELECT {p}, COUNT(*) AS {contract.TRAIN_COUNT} FROM train GROUP BY {p})
SELECT c.{p}, COALESCE(l.{d}, '') AS {d}, m.{price}, c.{contract.TRAIN_COUNT}
FROM counts AS c
JOIN prices AS m ON m.{p} = c.{p}
LEFT JOIN latest AS l ON l.{p} = c.{p}
ORDER BY c.{p}"""

    @staticmethod
    def export(table: str, split: str, uri: str) -> str:
        """Writes one split's rows as Parquet files matching ``uri`` (one ``*``)."""
        fields = ", ".join(OUTPUT_COLUMNS)
        return (
            f"EXPORT DATA OPTIONS (uri = {quote_string(uri)}, format = 'PARQUET', "
            f"overwrite = true) AS\nSELECT {fields} FROM {quote_name(table)}\n"
            f"WHERE {SPLIT} = {quote_string(split)}"
        )
