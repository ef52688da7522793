"""ingest_data: read, clean and split the interactions (ExampleGen)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_data(config_yaml: str, examples: Output[Dataset], data_source: str = ""):
    """Reads the dataset of an experiment, drops bad rows (counted), splits and writes examples.

    Args:
        config_yaml: The experiment config (YAML text), validated before anything runs.
        examples: Output folder: raw TFRecords and Parquet per split, catalog, schema, stats.
        data_source: Overrides the config's dataset.source (local path, gs:// or bq:// URI).
            A bq:// source is cleaned, split and featurised in BigQuery, which exports the
            splits to this step's output URI (a gs:// pipeline root).
    """
    from trainer import config as cfg
    from trainer import contract, cost, ingest

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    # Its wall time and machine, for the cost of the runs that share it.
    with cost.measure(contract.SHARED_STEPS[0], examples.path):
        stats = ingest.run_ingest(
            config, examples.path, source=data_source, output_uri=examples.uri
        )
    examples.metadata.update(
        {
            "rows_read": stats.rows_read,
            "rows_kept": stats.rows_kept,
            "rows_dropped": stats.rows_dropped,
            "rows": stats.rows,
            "catalog_size": stats.catalog_size,
        }
    )
