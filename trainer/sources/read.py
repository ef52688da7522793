"""Reading a dataset source in bounded chunks.

Sources: CSV (any delimiter, header row or not, gzip'd or not) or Parquet, one file or a
glob of files, local or remote (gs:// through tf.io.gfile).

Each chunk holds the mapped columns under their canonical names, as strings (the
timestamp and numbers are parsed by cleaning), plus ``ROW``: the row's position in the
whole source, which orders ties and seeds the random split the same way in every path.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import logging
import os
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract

log = logging.getLogger(__name__)

ROW = "_row"  # internal: position in the source; never written to the outputs
PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = ("*", "?", "[")
LOG_EVERY_S = 30.0  # progress lines while reading: one per file, then one per this many seconds


class IngestError(cfg.ConfigError):
    """The data cannot be used: a user error like a bad config (exit status 2, one line).

    The message reads ``<data file or config>: <config field>: <what is wrong>``.
    """

    def __init__(self, source: str, field: str, problem: str):
        super().__init__(source, field, problem)


def parse_timestamps(values: pd.Series, timestamp_format: str) -> pd.Series:
    """Parses timestamps with a strftime format or as epoch seconds / milliseconds (NaT: bad)."""
    unit = cfg.EPOCH_FORMATS.get(timestamp_format)
    if unit is None:
        return pd.to_datetime(values, format=timestamp_format, errors="coerce")
    numbers = pd.to_numeric(values, errors="coerce")
    return pd.to_datetime(numbers, unit=unit, errors="coerce")


class ParseCheck:
    """Counts values that fail to parse per column, over every chunk read so far.

    A column where most non-empty values fail (more than ``MOSTLY``) is a mapping or format
    error rather than a few bad rows: ingest stops with two sample values and the expected
    format instead of silently dropping most of the data.
    """

    MOSTLY = 0.5

    def __init__(self, source: str, dataset: cfg.Dataset):
        self.source, self.dataset = source, dataset
        self.seen: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.samples: dict[str, list[str]] = {}

    def add(self, name: str, raw: pd.Series, bad: pd.Series) -> None:
        """Counts one chunk of a column: ``raw`` non-empty values, ``bad`` where parsing failed."""
        self.seen[name] = self.seen.get(name, 0) + len(raw)
        self.failed[name] = self.failed.get(name, 0) + int(bad.sum())
        samples = self.samples.setdefault(name, [])
        if len(samples) < 2:
            samples += [str(v) for v in raw[bad].unique()[: 2 - len(samples)]]

    def add_counts(self, name: str, seen: int, failed: int) -> None:
        """Counts a column checked elsewhere (BigQuery): values seen and values that failed."""
        self.seen[name] = self.seen.get(name, 0) + seen
        self.failed[name] = self.failed.get(name, 0) + failed
        self.samples.setdefault(name, [])

    def first_failing(self) -> str | None:
        """The first column where most values failed to parse, or None."""
        for name, seen in self.seen.items():
            if seen and self.failed[name] > self.MOSTLY * seen:
                return name
        return None

    def check(self) -> None:
        """Raises IngestError for the first column where most values failed to parse."""
        name = self.first_failing()
        if name is None:
            return
        column = self.dataset.columns[name]
        if name == contract.TIMESTAMP:
            field = "dataset.timestamp_format"
            expected = f"timestamps in the format {self.dataset.timestamp_format!r}"
        else:
            field, expected = f"dataset.columns.{name}", "numbers"
        raise IngestError(
            self.source,
            field,
            f"{self.failed[name]} of {self.seen[name]} values of column {column!r} do not parse "
            f"(e.g. {', '.join(map(repr, self.samples[name]))}); expected {expected}",
        )


def is_remote(path: str) -> bool:
    """Whether a path is a URI read through tf.io.gfile (gs://, ...) rather than the OS."""
    return "://" in path


def source_files(path: str) -> list[str]:
    """The files of a source: itself, or the sorted matches of a glob (``*``, ``?``)."""
    if not any(c in path for c in _GLOB_CHARS):
        return [path]
    if is_remote(path):
        import tensorflow as tf

        return sorted(tf.io.gfile.glob(path))
    return sorted(p for p in glob.glob(path) if os.path.isfile(p))


def open_binary(path: str):
    """Opens a local or remote file for reading bytes, decompressing ``.gz``."""
    if is_remote(path):
        import tensorflow as tf

        raw = tf.io.gfile.GFile(path, "rb")
    else:
        raw = open(path, "rb")  # noqa: SIM115 - the caller closes it (or the gzip wrapper)
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


class _SeekableGFile:
    """A tf.io.gfile file as pyarrow's PythonFile wants it (GFile has no ``closed``)."""

    def __init__(self, f):
        self._f, self.closed = f, False

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._f.close()


@contextlib.contextmanager
def open_parquet(path: str):
    """A ``pyarrow.parquet.ParquetFile`` on a local or remote (gs://, ...) file, read in place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not is_remote(path):
        with open(path, "rb") as f:
            yield pq.ParquetFile(f)
        return
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        yield pq.ParquetFile(pa.PythonFile(_SeekableGFile(f), mode="r"))


def csv_options(dataset: cfg.Dataset) -> dict:
    """``pandas.read_csv`` arguments for the dataset's CSV layout (every value as a string)."""
    options = {
        "sep": dataset.csv.delimiter,
        "dtype": str,
        "keep_default_na": False,
        "na_values": [""],
        "encoding": "utf-8",
    }
    if not dataset.csv.header:
        options["header"] = None
        if dataset.csv.names:
            options["names"] = list(dataset.csv.names)
    return options


def _name_columns(frame: pd.DataFrame) -> pd.DataFrame:
    # A file without a header row gets its columns named by position: "0", "1", ...
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _raw_chunks(dataset: cfg.Dataset, path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if path.endswith(PARQUET_SUFFIXES):
        with open_parquet(path) as reader:
            for batch in reader.iter_batches(batch_size=chunk_rows):
                frame = batch.to_pandas()
                yield frame.astype({c: "string" for c in frame.columns})
        return
    with open_binary(path) as f:
        yield from (
            _name_columns(c) for c in pd.read_csv(f, chunksize=chunk_rows, **csv_options(dataset))
        )


def iter_chunks(
    dataset: cfg.Dataset, source: str = "", chunk_rows: int = 0
) -> Iterator[pd.DataFrame]:
    """Yields the source's rows in chunks of at most ``chunk_rows`` (0: one chunk per file).

    Raises:
        IngestError: no file matches, a file cannot be read, or a mapped column is missing.
    """
    path = source or dataset.source
    files = source_files(path)
    if not files:
        raise IngestError(path, "dataset.source", "no file matches this pattern")
    wanted = {src: name for name, src in dataset.columns.items()}
    offset, logged = 0, time.monotonic()
    for file in files:
        first = True
        try:
            for raw in _raw_chunks(dataset, file, chunk_rows or 1 << 62):
                missing = [src for src in wanted if src not in raw.columns]
                if missing:
                    raise IngestError(
                        file,
                        "dataset.columns",
                        f"column(s) {', '.join(missing)} named in dataset.columns are not in "
                        f"the file (it has: {', '.join(map(str, raw.columns))})",
                    )
                chunk = raw[list(wanted)].rename(columns=wanted)
                chunk[ROW] = np.arange(offset, offset + len(chunk), dtype=np.int64)
                offset += len(chunk)
                if time.monotonic() - logged >= LOG_EVERY_S or first:
                    log.info("ingest: read %d rows so far (now in %s)", offset, file)
                    logged, first = time.monotonic(), False
                yield chunk.reset_index(drop=True)
        except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
            if isinstance(err, IngestError):
                raise
            # pandas' ParserError and EmptyDataError, and Arrow's errors, are ValueErrors.
            raise IngestError(file, "dataset.source", f"cannot be read: {err}") from err


def read_source(dataset: cfg.Dataset, source: str = "") -> pd.DataFrame:
    """The whole source in one frame (the in-memory path and small sources)."""
    chunks = list(iter_chunks(dataset, source))
    return pd.concat(chunks, ignore_index=True) if len(chunks) != 1 else chunks[0]


def source_bytes(path: str) -> int:
    """Total size of a source's files on disk (compressed size for .gz)."""
    if is_remote(path):
        import tensorflow as tf

        return sum(tf.io.gfile.stat(f).length for f in source_files(path))
    return sum(os.path.getsize(f) for f in source_files(path))
