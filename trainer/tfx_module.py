"""TFX module file: ``preprocessing_fn`` for Transform and ``run_fn`` for Trainer.

Point a TFX pipeline's Transform and Trainer at this module (``module_file`` or
``module_path="trainer.tfx_module"``) with ``custom_config`` holding:

    feature_config     Transform: json.dumps(trainer.config.to_dict(feature_config))
    config_yaml        Trainer: the experiment YAML text
    ingest_dir         Trainer: our ingest output (catalog and raw splits for validation recall)
    feature_config_id, model_config_id, mlflow_tracking_uri   Trainer: optional
"""

from __future__ import annotations

from typing import Any

from trainer.features import preprocessing_fn  # noqa: F401  (TFX Transform entry point)


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point: trains with our loop on TFX's transformed examples.

    Args:
        fn_args: TFX ``FnArgs`` (or any object with the same attributes): train_files,
            eval_files, transform_output (or transform_graph_path), serving_model_dir,
            model_run_dir and custom_config.
    """
    from trainer import config as cfg
    from trainer.train import run_training

    custom = dict(fn_args.custom_config or {})
    config = cfg.parse_config_text(custom["config_yaml"], source="custom_config.config_yaml")
    transform_dir = getattr(fn_args, "transform_output", None) or fn_args.transform_graph_path
    run_training(
        config,
        ingest_dir=custom["ingest_dir"],
        transform_dir=transform_dir,
        model_dir=fn_args.model_run_dir,
        tracking_uri=custom.get("mlflow_tracking_uri", ""),
        feature_config_id=custom.get("feature_config_id", ""),
        model_config_id=custom.get("model_config_id", ""),
        train_files=list(fn_args.train_files),
        eval_files=list(fn_args.eval_files),
        serving_dir=fn_args.serving_model_dir,
    )
