"""BigQuery ingest on small data: the SQL (run on DuckDB) against the file path, and its errors."""

import concurrent.futures
import dataclasses
import logging

import duckdb
import pandas as pd
import pytest
import sqlglot

from tests.conftest import TINY_CONFIG, read_ingest_outputs, write_tiny_retail_csv
from tests.unit.trainer.bigquery_duckdb import DuckDBBigQuery
from trainer import config as cfg
from trainer import contract, sources
from trainer.ingest import bigquery as ingest_bigquery
from trainer.ingest import bigquery_sql
from trainer.ingest import files as ingest

TABLE = "my-project.shop.orders"


def _setup(tmp_path, rows: pd.DataFrame | None = None, **dataset_changes):
    """(file config, bq config, fake client) over the tiny CSV (or ``rows``) as a table."""
    source = tmp_path / "tiny.csv.gz"
    write_tiny_retail_csv(source)
    config = cfg.parse_config_text(TINY_CONFIG.format(source=source))
    if rows is None:
        rows = sources.read_source(config.dataset)
        rows = rows.rename(columns=config.dataset.columns).rename(columns={"_row": "line"})
    connection = duckdb.connect()
    connection.register("rows_frame", rows)
    connection.execute("CREATE TABLE orders AS SELECT * FROM rows_frame")
    dataset = dataclasses.replace(
        config.dataset,
        source=f"bq://{TABLE}",
        bigquery=cfg.BigQuery(order_column="line"),
        **dataset_changes,
    )
    bq_config = dataclasses.replace(config, dataset=dataset)
    return config, bq_config, DuckDBBigQuery(connection, {TABLE: "orders"})


def _both_paths(tmp_path, config, bq_config, client):
    """Ingests through the file path and BigQuery; checks the outputs agree; both stats."""
    file_stats = ingest.run_ingest(config, str(tmp_path / "files"))
    out = str(tmp_path / "bq")
    # BigQuery exports elsewhere (a URI read through tf.io.gfile, as gs:// is); then removed.
    export = tmp_path / "export"
    export.mkdir()
    stats = ingest_bigquery.run_bigquery_ingest(bq_config, out, f"file://{export}", client=client)
    assert any(f"file://{export}/bigquery_export/train/part-" in s for s in client.statements)
    assert not list(export.iterdir())
    files, bigquery = read_ingest_outputs(tmp_path / "files"), read_ingest_outputs(out)
    for name in (*contract.SPLITS, "catalog"):
        pd.testing.assert_frame_equal(bigquery[name], files[name], check_exact=False, rtol=1e-6)
    assert files["stats"] == bigquery["stats"]
    return file_stats, stats, bigquery


def test_bigquery_path_gives_the_file_paths_rows_counts_and_drops(tmp_path):
    config, bq_config, client = _setup(tmp_path)
    file_stats, stats, bigquery = _both_paths(tmp_path, config, bq_config, client)
    # The tiny data has bad rows of each kind: counted the same, under the same reasons.
    assert stats.rows_dropped == file_stats.rows_dropped
    assert stats.rows_dropped["missing_buyer_id"] == 3 and stats.rows_dropped["cancelled"] == 1
    assert dataclasses.replace(stats, source="") == dataclasses.replace(file_stats, source="")
    # Histories are point in time: every buyer's first moment has none.
    train = bigquery["train"]
    first = train.groupby(contract.BUYER_ID)[contract.TIMESTAMP].transform("min")
    assert (train.loc[train[contract.TIMESTAMP] == first, contract.HISTORY] == "").all()


def test_epoch_milliseconds_parse_as_in_the_file_path(tmp_path):
    config, _, _ = _setup(tmp_path)
    rows = sources.read_source(config.dataset)
    stamps = pd.to_datetime(rows[contract.TIMESTAMP], errors="coerce")
    millis = ((stamps - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)).astype("Int64")
    millis = millis.astype(str).where(stamps.notna(), "soon")
    rows = rows.assign(**{contract.TIMESTAMP: millis})
    # The same rows with epoch milliseconds: a CSV for the file path, a table for BigQuery.
    csv = tmp_path / "millis.csv"
    rows.rename(columns=config.dataset.columns).drop(columns="_row").to_csv(csv, index=False)
    table = rows.rename(columns=config.dataset.columns).rename(columns={"_row": "line"})
    config, bq_config, client = _setup(tmp_path, rows=table, timestamp_format="epoch_ms")
    files_config = dataclasses.replace(
        config,
        dataset=dataclasses.replace(config.dataset, source=str(csv), timestamp_format="epoch_ms"),
    )
    file_stats = ingest.run_ingest(files_config, str(tmp_path / "files"))
    out = str(tmp_path / "bq")
    stats = ingest_bigquery.run_bigquery_ingest(bq_config, out, out, client=client)
    assert stats.rows == file_stats.rows and stats.rows_dropped == file_stats.rows_dropped
    files, bigquery = read_ingest_outputs(tmp_path / "files"), read_ingest_outputs(out)
    for name in contract.SPLITS:
        pd.testing.assert_frame_equal(bigquery[name], files[name], check_exact=False, rtol=1e-6)


def test_mostly_unparsable_timestamps_stop_before_any_heavy_query(tmp_path):
    _, bq_config, client = _setup(tmp_path)
    bad = dataclasses.replace(bq_config.dataset, timestamp_format="%d/%m/%Y %H:%M")
    out = str(tmp_path / "bq")
    with pytest.raises(ingest.IngestError) as err:
        ingest_bigquery.run_bigquery_ingest(
            dataclasses.replace(bq_config, dataset=bad), out, out, client=client
        )
    message = str(err.value)
    assert "dataset.timestamp_format" in message and "'%d/%m/%Y %H:%M'" in message
    assert "'InvoiceDate'" in message and "2011-" in message  # a sample of the values
    assert len(client.statements) == 2  # the checks and the samples, nothing else


def test_an_empty_split_names_it_and_exports_nothing(tmp_path):
    _, bq_config, client = _setup(tmp_path)
    split = dataclasses.replace(
        bq_config.dataset.split,
        train_end=pd.Timestamp("2012-01-01").date(),
        eval_end=pd.Timestamp("2012-02-01").date(),
    )
    config = dataclasses.replace(
        bq_config, dataset=dataclasses.replace(bq_config.dataset, split=split)
    )
    out = tmp_path / "bq"
    with pytest.raises(ingest.IngestError, match=r"the eval split \(from 2012-01-01 .*has no rows"):
        ingest_bigquery.run_bigquery_ingest(config, str(out), str(out), client=client)
    assert not any(s.startswith("EXPORT DATA") for s in client.statements)
    assert not out.exists()


def test_a_bigquery_source_needs_a_cloud_storage_output(tmp_path):
    _, bq_config, _ = _setup(tmp_path)
    with pytest.raises(ingest.IngestError, match=r"gs:// pipeline root"):
        ingest.run_ingest(bq_config, str(tmp_path / "out"))


def test_names_and_values_from_the_config_are_quoted_in_the_sql():
    assert bigquery_sql.quote_name("a`b") == "`a\\`b`"
    assert bigquery_sql.quote_string("it's") == "'it\\'s'"
    config = cfg.parse_config_text(TINY_CONFIG.format(source="x.csv"))
    columns = {**config.dataset.columns, contract.DESCRIPTION: "Desc`ription"}
    cleaning = dataclasses.replace(config.dataset.cleaning, drop_transaction_prefixes=("C'",))
    dataset = dataclasses.replace(
        config.dataset,
        source=f"bq://{TABLE}",
        columns=columns,
        cleaning=cleaning,
        timestamp_format="%Y-%m-%d'%H",
    )
    sql = bigquery_sql.IngestSql(dataset, 50)
    for statement in (
        sql.checks(),
        sql.prepare(),
        sql.catalog("p.d.t"),
        sql.export("p.d.t", "train", "gs://b/x-*.parquet"),
    ):
        tree = sqlglot.parse_one(statement, read="bigquery")  # parses: nothing escaped out
        assert tree is not None
    assert "`Desc\\`ription`" in sql.prepare() and "'C\\''" in sql.checks()
    assert "'%Y-%m-%d\\'%H'" in sql.prepare()


def test_buyer_holdout_puts_each_buyer_where_the_file_path_does(tmp_path):
    config, bq_config, client = _setup(tmp_path)
    rule = cfg.Split(strategy="buyer_holdout", eval_fraction=0.2, test_fraction=0.2, seed=3)
    config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, split=rule))
    bq_config = dataclasses.replace(
        bq_config, dataset=dataclasses.replace(bq_config.dataset, split=rule)
    )
    file_stats, stats, bigquery = _both_paths(tmp_path, config, bq_config, client)
    assert stats.buyers == file_stats.buyers and min(stats.buyers.values()) > 0
    buyers = {n: set(bigquery[n][contract.BUYER_ID]) for n in contract.SPLITS}
    assert not buyers["train"] & buyers["eval"] and not buyers["eval"] & buyers["test"]


def test_cleaning_thresholds_that_are_not_whole_numbers_count_the_same(tmp_path):
    config, bq_config, client = _setup(tmp_path)
    rules = cfg.Cleaning(min_quantity=1.5, min_price=-0.5, drop_transaction_prefixes=("C", "5000"))
    config = dataclasses.replace(
        config, dataset=dataclasses.replace(config.dataset, cleaning=rules)
    )
    bq_config = dataclasses.replace(
        bq_config, dataset=dataclasses.replace(bq_config.dataset, cleaning=rules)
    )
    file_stats, stats, _ = _both_paths(tmp_path, config, bq_config, client)
    assert stats.rows_dropped == file_stats.rows_dropped
    assert stats.rows_dropped["quantity_le_1.5"] > 0 and "price_le_-0.5" not in stats.rows_dropped
    assert stats.rows_dropped["cancelled"] > 1  # "C..." and the first hundred invoices


class _SlowJobs(DuckDBBigQuery):
    """Jobs that are still running the first two times the step waits on them."""

    def query(self, sql, job_config=None):
        job = super().query(sql, job_config)
        waits = iter([True, True])
        done = job.result

        def result(timeout=None):
            if next(waits, False):
                raise concurrent.futures.TimeoutError()
            return done(timeout)

        job.result = result
        return job


def test_a_long_job_reports_progress_while_it_runs(tmp_path, caplog):
    _, bq_config, client = _setup(tmp_path)
    slow = _SlowJobs(client.connection, client.tables)
    out = str(tmp_path / "bq")
    with caplog.at_level(logging.INFO):
        ingest_bigquery.run_bigquery_ingest(bq_config, out, out, client=slow)
    lines = [r.getMessage() for r in caplog.records]
    statements = len(slow.statements)
    assert sum("running for" in line for line in lines) == 2 * statements
    assert sum(" started" in line for line in lines) == statements
    assert any("cleaning, buyer columns and split done in" in line for line in lines)
    assert any(line.startswith("ingest (BigQuery): read ") for line in lines)


def test_no_credentials_is_one_clear_line(tmp_path, monkeypatch):
    _, bq_config, _ = _setup(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(ingest.IngestError, match=r"no Google credentials .* project my-project"):
        ingest.run_ingest(bq_config, str(tmp_path / "out"), output_uri="gs://bucket/root/x")
