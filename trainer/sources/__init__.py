"""Dataset sources: reading CSV or Parquet in chunks, and the checks run before any compute.

The face of the wing: everything outside ``trainer.sources`` imports from here. ``read``
opens and parses a source (column mapping, timestamps, row numbers for errors);
``preflight`` is what ``python -m pipelines run|submit`` and ``python -m trainer`` check
before starting anything. No TensorFlow: the command lines use it before any step runs.
"""

from trainer.sources.preflight import CLOUD_PREFIXES, check_source
from trainer.sources.read import (
    ROW,
    IngestError,
    ParseCheck,
    iter_chunks,
    open_parquet,
    parse_timestamps,
    read_source,
    source_bytes,
    source_files,
)

__all__ = [
    "CLOUD_PREFIXES",
    "ROW",
    "IngestError",
    "ParseCheck",
    "check_source",
    "iter_chunks",
    "open_parquet",
    "parse_timestamps",
    "read_source",
    "source_bytes",
    "source_files",
]
