"""Transform: tf.Transform AnalyzeAndTransformDataset on Beam over the ingest output.

Analyzers (vocabularies, means, quantiles) see only the train split; every split is then
transformed with the same graph. Output folder layout (paths in trainer/layout.py):

    transform_fn/ + transformed_metadata/   the TFTransformOutput (part of the serving model)
    transformed/{split}-*.tfrecord.gz       transformed examples per split

The only module that imports Apache Beam: training and evaluation read its outputs through
``trainer/layout.py`` and ``tensorflow_transform.TFTransformOutput``.
"""

from __future__ import annotations

import logging
import os
import tempfile

import apache_beam as beam
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tfx_bsl.public import tfxio

from trainer import config as cfg
from trainer import features, layout

log = logging.getLogger(__name__)

# Measured on a 2-core machine: in_memory beat multi_processing for plain Beam pipelines.
DEFAULT_BEAM_ARGS = (
    "--runner=DirectRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)


def _source(ingest_dir: str, split: str, schema) -> tfxio.TFExampleRecord:
    return tfxio.TFExampleRecord(
        file_pattern=layout.split_path(ingest_dir, split, "tfrecord"),
        schema=schema,
        telemetry_descriptors=["b2b_recs"],
    )


def run_transform(
    feature_config: cfg.FeatureConfig,
    ingest_dir: str,
    output_dir: str,
    beam_pipeline_args: list[str] | None = None,
) -> tft.TFTransformOutput:
    """Analyzes train and transforms every split with the feature config's preprocessing_fn.

    Args:
        feature_config: The features to compute.
        ingest_dir: An ingest output folder (trainer/ingest.py).
        output_dir: Folder to write the transform graph and transformed examples to.
        beam_pipeline_args: Beam options; DirectRunner in memory when empty, DataflowRunner
            options (project, region, temp_location, ...) to scale out.

    Returns:
        The transform output, ready for the trainer.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    with open(layout.schema_path(ingest_dir), encoding="utf-8") as f:
        text_format.Parse(f.read(), schema)
    args = list(beam_pipeline_args or DEFAULT_BEAM_ARGS)
    os.makedirs(output_dir, exist_ok=True)
    temp_dir = _temp_location(args) or tempfile.mkdtemp(prefix="tft-")
    preprocessing_fn = features.make_preprocessing_fn(feature_config)

    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        with tft_beam.Context(temp_dir=temp_dir):
            train_source = _source(ingest_dir, "train", schema)
            train = pipeline | "ReadTrain" >> train_source.BeamSource()
            ((train_out, _), transform_fn) = (
                train,
                train_source.TensorAdapterConfig(),
            ) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                preprocessing_fn, output_record_batches=True
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(output_dir)
            _write(train_out, transform_fn, output_dir, "train")
            for split in ("eval", "test"):
                source = _source(ingest_dir, split, schema)
                data = pipeline | f"Read{split}" >> source.BeamSource()
                out, _ = ((data, source.TensorAdapterConfig()), transform_fn) | (
                    f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True)
                )
                _write(out, transform_fn, output_dir, split)
    log.info("transform: wrote %s", output_dir)
    return tft.TFTransformOutput(output_dir)


def _write(dataset, transform_fn, output_dir: str, split: str) -> None:
    encoded = dataset | f"Encode{split}" >> beam.FlatMapTuple(
        lambda batch, _: tfxio_record_batch_to_examples(batch)
    )
    _ = encoded | f"Write{split}" >> beam.io.WriteToTFRecord(
        layout.transformed_prefix(output_dir, split),
        file_name_suffix=layout.TFRECORD_SUFFIX,
        compression_type=beam.io.filesystem.CompressionTypes.GZIP,
    )


def tfxio_record_batch_to_examples(batch) -> list[bytes]:
    """Serialises an Arrow RecordBatch of transformed features to tf.Examples."""
    from tfx_bsl.coders import example_coder

    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def _temp_location(args: list[str]) -> str | None:
    for arg in args:
        if arg.startswith("--temp_location="):
            return arg.split("=", 1)[1]
    return None
