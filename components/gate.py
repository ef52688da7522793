"""gate_model: PROMOTE / REJECT / INCONCLUSIVE for the challenger against the champion."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def gate_model(
    config_yaml: str,
    mlflow_tracking_uri: str,
    version: str,
    examples: Input[Dataset],
) -> NamedTuple("GateOutputs", decision=str, champion_version=str, reason=str):
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
        decision (PROMOTE, REJECT or INCONCLUSIVE), the champion version compared with ("":
        none), and the reason in one line.
    """
    from collections import namedtuple

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
    outputs = namedtuple("GateOutputs", ["decision", "champion_version", "reason"])
    return outputs(result.decision, result.champion_version, result.reason)
