"""gate_model: PROMOTE / REJECT / INCONCLUSIVE for the challenger against the champion."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def gate_model(
    config_yaml: str,
    mlflow_tracking_uri: str,
    version: str,
    examples: Input[Dataset],
) -> str:
    """Compares the challenger version with the champion on the same test buyers.

    Paired bootstrap over the per-buyer test rows at registry.gate_k, with the repeat / new
    target and activity-band slices under registry.slice_tolerance; a champion of another
    protocol is evaluated again on this sweep's test split. The decision, its reason and
    figures are tagged on the version.

    Args:
        config_yaml: The experiment config (YAML text); its registry section.
        mlflow_tracking_uri: MLflow tracking URI (also the registry's).
        version: The challenger version (register_model's output).
        examples: This sweep's ingest output (the split a champion is evaluated on again).

    Returns:
        The decision: PROMOTE, REJECT or INCONCLUSIVE (its reason and the champion version it
        was compared with are on the version's gate.* tags). One output, named ``Output``:
        kfp.local (2.17) resolves a condition on a task's ``Output`` but not on a named output
        (``enhanced_dag_orchestrator._resolve_pipeline_channel`` reads
        ``pipelinechannel--gate-model-decision`` as a parent input), and the sweep's
        ``dsl.If`` must run the same on kfp.local and on Vertex.
    """
    from trainer import config as cfg
    from trainer import registry, tracking

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    result = registry.gate_version(
        tracking.open_client(mlflow_tracking_uri),
        config.registered_model_name,
        version,
        config.registry,
        examples.path,
    )
    return result.decision
