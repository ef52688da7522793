"""register_model: the sweep's best run as a new MLflow Model Registry version (challenger)."""

from kfp import dsl
from kfp.dsl import Input, Model

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register_model(
    config_yaml: str,
    mlflow_tracking_uri: str,
    best_model: Input[Model],
    pipeline_job: str = "",
) -> str:
    """Registers the best run's MLflow model under the YAML's registry.model_name.

    Only the sweep's winner is registered, as a new version tagged with its run, configs,
    seed, pipeline job, protocol key and metrics, holding the alias ``challenger``.

    Args:
        config_yaml: The experiment config (YAML text); names the registered model.
        mlflow_tracking_uri: MLflow tracking URI (also the registry's).
        best_model: The select_best_model output; its metadata names the MLflow run.
        pipeline_job: The pipeline job (a retried step finds the version it registered).

    Returns:
        The new version's number.
    """
    from trainer import config as cfg
    from trainer import registry, tracking

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    version = registry.register_run(
        tracking.open_client(mlflow_tracking_uri),
        config.registered_model_name,
        best_model.metadata["mlflow_run_id"],
        pipeline_job,
    )
    return version.version
