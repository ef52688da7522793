"""The experiment config: its schema, the strict YAML reader, validation, and what runs log.

The face of the wing: everything outside ``trainer.config`` imports from here.
``schema`` holds the dataclasses and their defaults (standard library only), ``strict_yaml``
reads YAML with line numbers and no duplicate keys, ``parse`` validates a file into an
``ExperimentConfig`` and writes it back.
"""

from trainer.config.parse import (
    dump_config,
    load_config,
    parse_config,
    parse_config_text,
    run_params,
    to_dict,
)
from trainer.config.schema import (
    BIGQUERY_PREFIX,
    EPOCH_FORMATS,
    LR_SCHEDULES,
    NATIVE_TIMESTAMP,
    OPTIMIZERS,
    TRANSFORMS,
    BigQuery,
    Cleaning,
    ConfigError,
    Csv,
    Dataset,
    ExperimentConfig,
    Feature,
    FeatureConfig,
    Grid,
    LrSchedule,
    ModelConfig,
    Optimizer,
    Pair,
    Registry,
    RunSpec,
    Split,
    Training,
    Transform,
)
from trainer.config.strict_yaml import YamlProblem, decode, loads

__all__ = [
    "BIGQUERY_PREFIX",
    "EPOCH_FORMATS",
    "LR_SCHEDULES",
    "NATIVE_TIMESTAMP",
    "OPTIMIZERS",
    "TRANSFORMS",
    "BigQuery",
    "Cleaning",
    "ConfigError",
    "Csv",
    "Dataset",
    "ExperimentConfig",
    "Feature",
    "FeatureConfig",
    "Grid",
    "LrSchedule",
    "ModelConfig",
    "Optimizer",
    "Pair",
    "Registry",
    "RunSpec",
    "Split",
    "Training",
    "Transform",
    "YamlProblem",
    "decode",
    "dump_config",
    "load_config",
    "loads",
    "parse_config",
    "parse_config_text",
    "run_params",
    "to_dict",
]
