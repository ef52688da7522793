"""A stand-in for ``google.cloud.bigquery.Client`` that runs the SQL on DuckDB.

The narrowest fake of BigQuery: ``query(sql)`` transpiles the GoogleSQL text to DuckDB with
sqlglot and runs it. Like BigQuery, every query writes its result to a destination table
that later queries may read by name, and ``EXPORT DATA`` writes Parquet files under its URI
(a local folder or ``file://`` URI here, with the ``*`` numbered). Only what sqlglot cannot express is rewritten
by hand: ``SAFE.PARSE_TIMESTAMP`` becomes DuckDB's ``TRY_STRPTIME``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import duckdb
import sqlglot
from sqlglot import exp

_TABLE_NUMBERS = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class TableReference:
    project: str
    dataset_id: str
    table_id: str


class _Result:
    def __init__(self, client, relation):
        self._client, self._relation = client, relation

    def to_arrow(self):
        table = self._relation.to_arrow_table()
        self._client.rows_returned += table.num_rows
        return table


@dataclasses.dataclass
class QueryJob:
    job_id: str
    destination: TableReference | None
    _result: _Result
    total_bytes_processed: int = 0

    def result(self, timeout: float | None = None):
        return self._result  # DuckDB ran it already


class DuckDBBigQuery:
    """``Client.query`` over DuckDB; ``tables`` maps BigQuery table paths to DuckDB tables."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, tables: dict[str, str]):
        self.connection = connection
        self.tables = dict(tables)
        self.statements: list[str] = []  # every GoogleSQL text received, in order
        self.rows_returned = 0  # rows the caller read back (to_arrow)

    def query(self, sql: str, job_config=None) -> QueryJob:
        self.statements.append(sql)
        job_id = f"job_{len(self.statements)}"
        tree = sqlglot.parse_one(sql, read="bigquery")
        if isinstance(tree, exp.Export):
            self._export(tree)
            return QueryJob(job_id, None, _Result(self, None))
        name = f"anon_{next(_TABLE_NUMBERS)}"  # unique in the connection, like BigQuery's
        self.connection.execute(f"CREATE TABLE {name} AS {to_duckdb(tree, self.tables)}")
        destination = TableReference("fake-project", "_anonymous", name)
        self.tables[f"fake-project._anonymous.{name}"] = name
        return QueryJob(job_id, destination, _Result(self, self.connection.table(name)))

    def _export(self, tree: exp.Export) -> None:
        options = {}
        for prop in tree.args["options"].expressions:
            if isinstance(prop, exp.FileFormatProperty):
                options["format"] = prop.this.name
            else:
                options[prop.this.name.lower()] = prop.args["value"].name
        uri = options["uri"].removeprefix("file://")  # a gs:// stand-in the test can read
        assert options["format"].upper() == "PARQUET", options
        folder = os.path.dirname(uri)
        os.makedirs(folder, exist_ok=True)
        select = to_duckdb(tree.this, self.tables)
        target = uri.replace("*", "000000000000")
        self.connection.execute(f"COPY ({select}) TO '{target}' (FORMAT PARQUET)")


def to_duckdb(tree: exp.Expression, tables: dict[str, str]) -> str:
    """GoogleSQL to DuckDB: table paths mapped, SAFE.PARSE_TIMESTAMP as TRY_STRPTIME."""

    def rewrite(node):
        if isinstance(node, exp.Table):
            path = ".".join(
                p.name for p in (node.args.get("catalog"), node.args.get("db"), node.this) if p
            )
            if path in tables:
                return (
                    exp.to_table(tables[path]).as_(node.alias)
                    if node.alias
                    else exp.to_table(tables[path])
                )
        if isinstance(node, exp.SafeFunc) and isinstance(node.this, exp.StrToTime):
            return exp.Anonymous(
                this="TRY_STRPTIME", expressions=[node.this.this, node.this.args["format"]]
            )
        return node

    return tree.transform(rewrite).sql(dialect="duckdb")
