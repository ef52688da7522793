"""BigQuery ingest on Online Retail: the generated SQL, run on DuckDB, gives the file path's rows.

The table is the bundled CSV loaded as BigQuery would hold it, with its line number as
``bigquery.order_column``. Only the BigQuery client is faked (tests/unit/trainer/
bigquery_duckdb.py: sqlglot transpiles the GoogleSQL and DuckDB runs it); the step's own
code (SQL generation, checks, export conversion, stats, catalog) is the product's.
"""

import dataclasses

import duckdb
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import read_ingest_outputs
from tests.unit.trainer.bigquery_duckdb import DuckDBBigQuery
from trainer import config as cfg
from trainer import contract, ingest, layout, sources
from trainer.ingest import bigquery as ingest_bigquery

pytestmark = pytest.mark.integration  # the real dataset through both paths (about a minute)

TABLE = "my-project.retail.online_retail"


@pytest.fixture(scope="module")
def retail():
    """The config, and a DuckDB table holding Online Retail as a BigQuery table would."""
    config = cfg.load_config("configs/online_retail.yaml")
    frame = sources.read_source(config.dataset)  # every column as a string
    frame = frame.rename(columns=config.dataset.columns).rename(columns={"_row": "line"})
    connection = duckdb.connect()
    connection.register("source_frame", frame)
    connection.execute("CREATE TABLE online_retail AS SELECT * FROM source_frame")
    return config, connection


def _bigquery_config(config, **bigquery):
    dataset = dataclasses.replace(
        config.dataset, source=f"bq://{TABLE}", bigquery=cfg.BigQuery(**bigquery)
    )
    return dataclasses.replace(config, dataset=dataset)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, name: str) -> float:
    """Every column equal; two computed floats to float32 precision. Returns their error.

    BigQuery has no 32-bit float: the file path sums quantity x price of float32 values
    (monetary) and takes the median of float32 prices (the catalog's price), BigQuery does
    both on FLOAT64, so such a value may end one float32 step apart. Everything else
    (strings, history, times, splits, counts) must be identical.
    """
    assert list(a.columns) == list(b.columns) and dict(a.dtypes) == dict(b.dtypes), name
    assert len(a) == len(b), name
    close = contract.PRICE if name == "catalog" else contract.MONETARY
    x, y = a[close].to_numpy(np.float64), b[close].to_numpy(np.float64)
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=0, err_msg=f"{name}.{close}")
    error = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-9), initial=0.0))
    pd.testing.assert_frame_equal(
        a.drop(columns=close), b.drop(columns=close), check_exact=True, obj=name
    )
    return error


def test_bigquery_sql_gives_the_file_paths_splits_and_buyer_columns_row_for_row(retail, tmp_path):
    config, connection = retail
    ingest.run_ingest(config, str(tmp_path / "files"), strong_baselines=False)
    client = DuckDBBigQuery(connection, {TABLE: "online_retail"})
    out = str(tmp_path / "bigquery")
    stats = ingest_bigquery.run_bigquery_ingest(
        _bigquery_config(config, order_column="line"), out, out, client=client
    )
    files, bigquery = read_ingest_outputs(tmp_path / "files"), read_ingest_outputs(out)

    compared, error = 0, 0.0
    for name in (*contract.SPLITS, "catalog"):
        error = max(error, _assert_same(bigquery[name], files[name], name))
        compared += len(files[name])
    assert bigquery["stats"] == files["stats"]
    assert stats.rows_read == 541_909 and compared == sum(stats.rows.values()) + stats.catalog_size
    print(
        f"rows compared: {compared} ({stats.rows} + catalog {stats.catalog_size}); "
        f"largest relative difference of monetary / catalog price: {error:.2e}"
    )
    # The TFRecords the transform reads hold the same rows.
    for name in contract.SPLITS:
        path = layout.split_path(out, name, "tfrecord")
        records = sum(1 for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"))
        assert records == stats.rows[name]
    # Only small results came back to the step: 1 row of checks, 3 of counts, the catalog.
    assert client.rows_returned == 1 + len(contract.SPLITS) + stats.catalog_size
    assert any(s.startswith("EXPORT DATA") for s in client.statements)
    assert not list((tmp_path / "bigquery").glob(f"{ingest_bigquery.EXPORT_DIR}*"))


def test_without_an_order_column_ties_follow_the_product_id_and_nothing_else_moves(
    retail, tmp_path
):
    config, connection = retail
    client = DuckDBBigQuery(connection, {TABLE: "online_retail"})
    ordered, unordered = str(tmp_path / "ordered"), str(tmp_path / "unordered")
    ingest_bigquery.run_bigquery_ingest(
        _bigquery_config(config, order_column="line"), ordered, ordered, client=client
    )
    ingest_bigquery.run_bigquery_ingest(
        _bigquery_config(config), unordered, unordered, client=client
    )
    a, b = read_ingest_outputs(ordered), read_ingest_outputs(unordered)
    for name in contract.SPLITS:
        history = contract.HISTORY
        pd.testing.assert_frame_equal(a[name].drop(columns=history), b[name].drop(columns=history))
        # The same products in each history, at most their order among ties differs.
        same_sets = a[name][history].str.split().map(sorted) == b[name][history].str.split().map(
            sorted
        )
        full = a[name][history].str.split().map(len) < config.history_length
        assert same_sets[full].all()
        assert (a[name][history] != b[name][history]).any()
    assert a["stats"] == b["stats"]


def test_a_query_source_and_typed_columns_give_the_same_rows(retail, tmp_path):
    config, connection = retail
    # A table as a BigQuery load would type it: numbers, a TIMESTAMP, a float buyer id.
    connection.execute(
        """CREATE OR REPLACE TABLE typed AS SELECT InvoiceNo, StockCode, Description,
        CAST(Quantity AS BIGINT) AS Quantity, CAST(InvoiceDate AS TIMESTAMP) AS InvoiceDate,
        CAST(UnitPrice AS DOUBLE) AS UnitPrice, TRY_CAST(CustomerID AS DOUBLE) AS CustomerID,
        Country, line FROM online_retail"""
    )
    client = DuckDBBigQuery(
        connection, {"my-project.retail.typed": "typed", TABLE: "online_retail"}
    )
    strings, typed = str(tmp_path / "strings"), str(tmp_path / "typed")
    ingest_bigquery.run_bigquery_ingest(
        _bigquery_config(config, order_column="line"), strings, strings, client=client
    )
    query = "SELECT * FROM `my-project.retail.typed` WHERE Country != 'Nowhere'"
    typed_config = _bigquery_config(config, order_column="line", query=query)
    typed_config = dataclasses.replace(
        typed_config,
        dataset=dataclasses.replace(
            typed_config.dataset, source="bq://my-project", timestamp_format="native"
        ),
    )
    ingest_bigquery.run_bigquery_ingest(typed_config, typed, typed, client=client)
    a, b = read_ingest_outputs(strings), read_ingest_outputs(typed)
    for name in (*contract.SPLITS, "catalog"):
        _assert_same(a[name], b[name], name)
    assert a["stats"] == b["stats"]
    assert np.isfinite(a["train"][contract.MONETARY]).all()
