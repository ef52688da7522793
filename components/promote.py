"""promote_model: move the alias champion to the challenger (after reading it again)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def promote_model(
    config_yaml: str,
    mlflow_tracking_uri: str,
    version: str,
    examples: Input[Dataset],
    serving_image: str,
    upload_request: Output[Artifact],
) -> NamedTuple("PromoteOutputs", moved=str, artifact_uri=str):
    """Moves champion to the version the gate promoted, unless the champion moved meanwhile.

    The champion is read again first: if another sweep moved it since the gate, the gate runs
    again against the new one and the alias moves only on a new PROMOTE. Writes what goes to
    the Vertex Model Registry (display name, SavedModel URI, serving container).

    Args:
        config_yaml: The experiment config (YAML text); its registry section.
        mlflow_tracking_uri: MLflow tracking URI (also the registry's).
        version: The challenger version.
        examples: This sweep's ingest output (for a new decision against a new champion).
        upload_request: Output: vertex_upload.json, the model upload's inputs.
        serving_image: The serving container image (the component image: its predictor).

    Returns:
        moved ("true" when champion moved) and the SavedModel's URI to upload.
    """
    import json
    import os
    from collections import namedtuple

    from trainer import config as cfg
    from trainer import contract, registry, tracking

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    client = tracking.open_client(mlflow_tracking_uri)
    # The champion the gate compared with, from the version's gate tags (the gate step's one
    # output is its decision: see gate_model).
    challenger = registry.get_version(client, config.registered_model_name, version)
    expected_champion = challenger.tags.get(contract.TAG_GATE_CHAMPION, "")
    done = registry.promote(
        client,
        config.registered_model_name,
        version,
        config.registry,
        expected_champion,
        examples.path,
        upload=(upload_request.path, serving_image, config.registered_model_name),
    )
    uri = ""
    if done.upload_request:
        with open(done.upload_request, encoding="utf-8") as f:
            uri = json.load(f)["artifact_uri"]
        upload_request.metadata.update({"file": os.path.basename(done.upload_request)})
    upload_request.metadata.update({"moved": done.moved, "decision": done.result.decision})
    outputs = namedtuple("PromoteOutputs", ["moved", "artifact_uri"])
    return outputs("true" if done.moved else "false", uri)
