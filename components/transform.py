"""transform_data: tf.Transform on Beam (Transform)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def transform_data(
    config_yaml: str,
    examples: Input[Dataset],
    transform_graph: Output[Artifact],
    feature_config_id: str = "",
    beam_pipeline_args: list = [],
) -> dict:
    """Analyzes the train split and transforms every split with the feature config.

    Args:
        config_yaml: The experiment config (YAML text).
        examples: The ingest output (read by its URI: gs:// on Vertex).
        transform_graph: Output folder (written by its URI): the transform graph and the
            transformed examples.
        feature_config_id: Which feature config; the first when empty.
        beam_pipeline_args: Beam options; DirectRunner when empty, DataflowRunner options to
            scale out (--runner=DataflowRunner --project=... --region=... --temp_location=gs://...
            --sdk_container_image=<the component image>, which the environment file adds).

    Returns:
        The feature config id and the transform output's URI, for the sweep's trainings.
    """
    from trainer import config as cfg
    from trainer import contract, cost, transform

    config = cfg.parse_config_text(config_yaml, source="config_yaml")
    feature_config = config.feature_config(feature_config_id)
    # URIs, not FUSE paths: Dataflow's workers reach gs://, they have no /gcs/ mount.
    with cost.measure(contract.SHARED_STEPS[1], transform_graph.path):
        transform.run_transform(
            feature_config,
            examples.uri,
            transform_graph.uri,
            beam_pipeline_args=beam_pipeline_args,
        )
    transform_graph.metadata["feature_config_id"] = feature_config.id
    return {"feature_config_id": feature_config.id, "uri": transform_graph.uri}
