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

# Sources checked where the data is read (a worker with credentials), not on the submitter.
REMOTE_PREFIXES = ("gs://", "bq://")
_HEAD_BYTES = 1 << 16


def _fail(config: cfg.ExperimentConfig, field: str, problem: str) -> None:
    raise cfg.ConfigError(config.source, field, problem)


def source_columns(path: str) -> list[str]:
    """The column names of a local CSV (gzip'd or not) or Parquet file.

    Raises:
        ValueError: the file is empty, not readable as its type, or has no header.
    """
    if path.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
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
        raise ValueError(
            f"is not UTF-8 text (byte 0x{head[err.start]:02x} at offset {err.start})"
        ) from err
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, nrows=5)
    except pd.errors.ParserError as err:
        raise ValueError(f"is not a readable CSV file ({err})") from err
    return [str(c) for c in frame.columns]


def check_source(config: cfg.ExperimentConfig, source: str = "") -> None:
    """Checks that the dataset source exists, is not empty and has every mapped column.

    Args:
        config: The validated experiment config.
        source: Overrides ``config.dataset.source`` when not empty.

    Raises:
        ConfigError: naming the config file, the field and what is wrong with the source.
    """
    path = source or config.dataset.source
    if path.startswith(REMOTE_PREFIXES):
        return
    if not os.path.exists(path):
        _fail(config, "dataset.source", f"file not found: {path}")
    if not os.path.isfile(path):
        _fail(config, "dataset.source", f"not a file: {path}")
    if not os.access(path, os.R_OK):
        _fail(config, "dataset.source", f"not readable (permissions): {path}")
    if os.path.getsize(path) == 0:
        _fail(config, "dataset.source", f"{path} is empty (0 bytes)")
    try:
        columns = source_columns(path)
    except ValueError as err:
        _fail(config, "dataset.source", f"{path} {err}")
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
