"""Ingest (the pipeline's ExampleGen): clean, split and featurise a source into the layout.

The face of the wing: everything outside ``trainer.ingest`` imports from here. ``files``
is the file path (chunked, spilled by buyer) and ``run_ingest``'s dispatch; ``bigquery``
runs the same cleaning and split as SQL that ``bigquery_sql`` generates; ``output`` writes
the folder both paths end in; ``baselines`` writes the strong baselines beside the splits.
"""

from trainer.ingest.baselines import read_strong_baselines, write_strong_baselines
from trainer.ingest.files import run_ingest
from trainer.ingest.output import load_stats

__all__ = ["load_stats", "read_strong_baselines", "run_ingest", "write_strong_baselines"]
