"""Checks on a dataset source that run before any compute: exists, readable, not empty, columns.

``python -m pipelines run|submit`` and ``python -m trainer`` call ``check_source`` before
starting anything, and ingest calls it again where the data is read, so a missing file or a
mis-mapped column costs seconds, not a pipeline run. Only the head of the file is read.
"""

from __future__ import annotations

import gzip
import io
import os

from trainer import config as cfg

# Sources a Vertex worker reads in place (a local file is uploaded by `pipelines submit`).
CLOUD_PREFIXES = ("gs://", "bq://")
_HEAD_BYTES = 1 << 16
HEAD_ROWS = 100  # rows whose timestamps are checked before anything runs


def _fail(config: cfg.ExperimentConfig, field: str, problem: str) -> None:
    raise cfg.ConfigError(config.source, field, problem)


def source_head(path: str, dataset: cfg.Dataset | None = None):
    """The first rows (up to ``HEAD_ROWS``) of a local CSV or Parquet file, as strings.

    A CSV is read with the dataset's layout (delimiter; header row, or columns named by
    position "0", "1", ... or by ``dataset.csv.names``).

    Raises:
        ValueError: the file is empty, not readable as its type, or has no header.
    """
    from trainer.sources import read as ingest_source

    if path.endswith(ingest_source.PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as f:
                return next(f.iter_batches(batch_size=HEAD_ROWS)).to_pandas().astype(str)
        except StopIteration:
            raise ValueError("has no rows") from None
        except (
            OSError,
            ValueError,
        ) as err:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise ValueError(f"not a readable Parquet file ({type(err).__name__}: {err})") from err
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot be read ({err})") from err
    if not head.strip():
        raise ValueError("is empty (no header row, no data)")
    import pandas as pd

    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not a character cut by the head's end
            raise ValueError(
                f"is not UTF-8 text (byte 0x{head[err.start]:02x} at offset {err.start})"
            ) from err
        text = head[: err.start].decode("utf-8-sig")
    options = ingest_source.csv_options(dataset) if dataset else {"dtype": str}
    options.pop("encoding", None)
    try:
        frame = pd.read_csv(io.StringIO(text), nrows=HEAD_ROWS, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"is not a readable CSV file ({err})") from err
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _check_head_parses(config: cfg.ExperimentConfig, path: str, head) -> None:
    """The head's timestamps parse with the configured format (most of them at least)."""
    from trainer import contract
    from trainer.sources import read as ingest_source

    column = config.dataset.columns[contract.TIMESTAMP]
    values = head[column].dropna() if column in head else head.iloc[:0, 0]
    values = values[values.astype(str).str.strip() != ""]
    checks = ingest_source.ParseCheck(path, config.dataset)
    stamps = ingest_source.parse_timestamps(values, config.dataset.timestamp_format)
    checks.add(contract.TIMESTAMP, values, stamps.isna())
    checks.check()


def check_source(config: cfg.ExperimentConfig, source: str = "") -> None:
    """Checks that the dataset source exists, is not empty and has every mapped column.

    A glob source (``*``, ``?``) must match at least one file; each match is checked.

    Args:
        config: The validated experiment config.
        source: Overrides ``config.dataset.source`` when not empty.

    Raises:
        ConfigError: naming the config file, the field and what is wrong with the source.
    """
    from trainer.sources import read as ingest_source

    path = source or config.dataset.source
    if ingest_source.is_remote(path):
        return  # gs://, bq://, ...: checked where it is read (a worker with credentials)
    files = ingest_source.source_files(path)
    if not files:
        _fail(config, "dataset.source", f"no file matches {path}")
    for file in files:
        _check_file(config, file)


def _check_file(config: cfg.ExperimentConfig, path: str) -> None:
    if not os.path.exists(path):
        _fail(config, "dataset.source", f"file not found: {path}")
    if not os.path.isfile(path):
        _fail(config, "dataset.source", f"not a file: {path}")
    if not os.access(path, os.R_OK):
        _fail(config, "dataset.source", f"not readable (permissions): {path}")
    if os.path.getsize(path) == 0:
        _fail(config, "dataset.source", f"{path} is empty (0 bytes)")
    try:
        head = source_head(path, config.dataset)
    except ValueError as err:
        _fail(config, "dataset.source", f"{path} {err}")
    columns = list(head.columns)
    missing = {name: src for name, src in config.dataset.columns.items() if src not in columns}
    if missing:
        name, src = next(iter(missing.items()))
        _fail(
            config,
            f"dataset.columns.{name}",
            f"column {src!r} is not in {path} (it has: {', '.join(columns)})"
            + (
                f"; also missing: {', '.join(list(missing.values())[1:])}"
                if len(missing) > 1
                else ""
            ),
        )
    _check_head_parses(config, path, head)
