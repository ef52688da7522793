"""Ingest from BigQuery: cleaning, split and buyer columns run in BigQuery, not in the step.

For a ``bq://PROJECT.DATASET.TABLE`` source (or ``bigquery.query``), the statements of
trainer/ingest/bigquery_sql.py run as query jobs:

1. ``checks``: rows read and dropped per reason (one row back); stops early, like the file
   path, when most timestamps or numbers do not parse.
2. ``prepare``: every cleaned row with its buyer columns and split, into the job's
   destination table (BigQuery's temporary result table, kept a day).
3. ``split_stats`` and ``catalog``: counts per split (three rows back) and the catalog (one
   row per product back).
4. ``export``: each split as Parquet files under ``<export URI>/bigquery_export/<split>/``
   (in a pipeline, the step's output artifact URI).

The step then turns the exported files into the ingest folder's layout (trainer/layout.py:
Parquet + tf.Example TFRecords per split) file by file, in record batches, so its memory does
not grow with the data, and removes the export. The export URI must be on Cloud Storage:
BigQuery writes there itself.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time

import pandas as pd
import tensorflow as tf

from trainer import config as cfg
from trainer import contract, sources
from trainer.ingest import bigquery_sql
from trainer.ingest import output as ingest_output
from trainer.sources import IngestError, ParseCheck

log = logging.getLogger(__name__)

EXPORT_DIR = "bigquery_export"
BATCH_ROWS = 100_000  # rows converted at a time from the exported Parquet files
LOG_EVERY_S = 30.0  # a progress line per running job this often


def client_for(dataset: cfg.Dataset):
    """A BigQuery client in the source's project (the project that runs the jobs)."""
    import google.auth.exceptions
    from google.cloud import bigquery

    project = dataset.source.removeprefix(cfg.BIGQUERY_PREFIX).split(".", 1)[0]
    try:
        return bigquery.Client(project=project)
    except google.auth.exceptions.DefaultCredentialsError as err:
        raise IngestError(
            dataset.source,
            "dataset.source",
            f"no Google credentials to run BigQuery jobs in project {project} ({err}); on a "
            "workstation: gcloud auth application-default login",
        ) from err


def table_path(destination) -> str:
    """``project.dataset.table`` of a job's destination table."""
    return f"{destination.project}.{destination.dataset_id}.{destination.table_id}"


def _run(client, sql: str, what: str):
    """Runs one statement; a line every LOG_EVERY_S while it runs, one when it is done."""
    started = time.monotonic()
    job = client.query(sql)
    log.info("ingest (BigQuery): %s: job %s started", what, getattr(job, "job_id", "?"))
    while True:
        try:
            result = job.result(timeout=LOG_EVERY_S)
            break
        except concurrent.futures.TimeoutError:
            log.info("ingest (BigQuery): %s: running for %.0f s", what, time.monotonic() - started)
    processed = getattr(job, "total_bytes_processed", None)
    log.info(
        "ingest (BigQuery): %s done in %.1f s (%s bytes processed)",
        what,
        time.monotonic() - started,
        processed if processed is not None else "?",
    )
    return job, result


def _frame(result) -> pd.DataFrame:
    return result.to_arrow().to_pandas()


def run_bigquery_ingest(
    config: cfg.ExperimentConfig, output_dir: str, export_uri: str, client=None
):
    """Runs ingest in BigQuery and writes the ingest folder.

    Args:
        config: The validated experiment config (a ``bq://`` source).
        output_dir: The ingest folder the step writes (a local path; on Vertex the FUSE path
            of the artifact).
        export_uri: Where BigQuery exports the splits (``gs://...``; the artifact's URI in a
            pipeline), under ``bigquery_export/``, removed once converted.
        client: A ``google.cloud.bigquery.Client``; one for the source's project if None.

    Returns:
        The ``IngestStats`` written to stats.json.

    Raises:
        IngestError: most values of a column do not parse, nothing is left after cleaning,
            or a split has no rows or nothing train knows.
    """
    dataset = config.dataset
    source = dataset.source + (f" ({dataset.bigquery.query})" if dataset.bigquery.query else "")
    sql = bigquery_sql.IngestSql(dataset, config.history_length)
    client = client or client_for(dataset)
    stats = ingest_output.IngestStats(source=dataset.source)
    _check_rows(client, sql, stats, source, dataset)
    if not stats.rows_kept:
        raise ingest_output.no_rows_error(stats)

    job, _ = _run(client, sql.prepare(), "cleaning, buyer columns and split")
    table = table_path(job.destination)
    counts, times = _split_counts(client, sql, table)
    ingest_output.check_splits(dataset.source, dataset.split, counts)
    _, result = _run(client, sql.catalog(table), "catalog")
    catalog = _typed_catalog(_frame(result))

    os.makedirs(output_dir, exist_ok=True)
    for name in contract.SPLITS:
        uri = f"{export_uri.rstrip('/')}/{EXPORT_DIR}/{name}/part-*.parquet"
        _run(client, sql.export(table, name, uri), f"export of {name}")
        written = _convert_export(export_uri, output_dir, name)
        if written != counts[name].rows:
            raise IngestError(
                dataset.source,
                "dataset.source",
                f"BigQuery exported {written} {name} rows, its count was {counts[name].rows}",
            )
    tf.io.gfile.rmtree(f"{export_uri.rstrip('/')}/{EXPORT_DIR}")

    stats.fill(counts, times, len(catalog))
    ingest_output.write_tail(output_dir, catalog, stats)
    return stats


def _check_rows(client, sql, stats, source: str, dataset: cfg.Dataset) -> None:
    # Counts per drop reason, and the parse check of the file path on BigQuery's counts.
    _, result = _run(client, sql.checks(), "row checks")
    row = _frame(result).iloc[0]
    stats.rows_read = int(row["rows_read"])
    for reason, _ in sql.drop_reasons():
        if int(row[reason]):
            stats.rows_dropped[reason] = int(row[reason])
    stats.rows_kept = stats.rows_read - sum(stats.rows_dropped.values())
    checks = ParseCheck(source, dataset)
    for name in (contract.TIMESTAMP, *contract.SOURCE_FLOAT_COLUMNS):
        if f"seen_{name}" in row:
            checks.add_counts(name, int(row[f"seen_{name}"]), int(row[f"failed_{name}"]))
    failing = checks.first_failing()
    if failing is not None:
        _, samples = _run(client, sql.failing_samples(failing), f"samples of {failing}")
        checks.samples[failing] = [str(v) for v in _frame(samples)["value"]]
        checks.check()


def _split_counts(client, sql, table: str):
    _, result = _run(client, sql.split_stats(table), "counts per split")
    counts, times = {}, {}
    for row in _frame(result).itertuples(index=False):
        counts[row.split_name] = ingest_output.SplitCounts(
            rows=int(row.row_count),
            buyers=int(row.buyers),
            products=int(row.products),
            known_buyers=int(row.known_buyers),
            known_products=int(row.known_products),
        )
        times[row.split_name] = (int(row.first_time), int(row.last_time))
    for name in contract.SPLITS:
        counts.setdefault(name, ingest_output.SplitCounts())
    return counts, times


def _typed_catalog(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            contract.PRODUCT_ID: frame[contract.PRODUCT_ID].astype(str),
            contract.DESCRIPTION: frame[contract.DESCRIPTION].fillna("").astype(str),
            contract.PRICE: frame[contract.PRICE].astype("float32"),
            contract.TRAIN_COUNT: frame[contract.TRAIN_COUNT].astype("int64"),
        }
    )


def typed_split(frame: pd.DataFrame) -> pd.DataFrame:
    """Exported rows typed and ordered as the file path writes them."""
    frame = frame[list(bigquery_sql.OUTPUT_COLUMNS)].copy()
    for name in bigquery_sql.OUTPUT_COLUMNS:
        kind = contract.RAW_COLUMN_TYPES[name]
        if kind == contract.STRING:
            frame[name] = frame[name].fillna("").astype(str)
        elif kind == contract.FLOAT:
            frame[name] = frame[name].astype("float32")
        else:
            frame[name] = frame[name].astype("int64")
    return frame


def _convert_export(export_uri: str, output_dir: str, name: str) -> int:
    """Turns one split's exported Parquet files into its layout files; returns the rows.

    The files are read where BigQuery wrote them (through tf.io.gfile: gs:// directly, not
    a FUSE mount's listing), a record batch at a time.
    """
    pattern = f"{export_uri.rstrip('/')}/{EXPORT_DIR}/{name}/part-*.parquet"
    files = sorted(tf.io.gfile.glob(pattern))
    out = ingest_output.SplitFiles(output_dir, name)
    rows = 0
    try:
        for i, path in enumerate(files, 1):
            with sources.open_parquet(path) as reader:
                for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                    if batch.num_rows:
                        out.write(typed_split(batch.to_pandas()))
                        rows += batch.num_rows
            log.info(
                "ingest (BigQuery): %s: file %d/%d converted, %d rows", name, i, len(files), rows
            )
    finally:
        out.close()
    return rows
