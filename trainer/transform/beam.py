"""Transform: tf.Transform AnalyzeAndTransformDataset on Beam over the ingest output.

Analyzers (vocabularies, means, quantiles) see only the train split; every split is then
transformed with the same graph. Output folder layout (paths in trainer/layout.py):

    transform_fn/ + transformed_metadata/   the TFTransformOutput (part of the serving model)
    transformed/{split}-*.tfrecord.gz       transformed examples per split

The only module that imports Apache Beam: training and evaluation read its outputs through
``trainer/layout.py`` and ``tensorflow_transform.TFTransformOutput``.

Folders are URIs (``gs://`` on Vertex, so Dataflow's workers can reach them) or local paths;
every file access goes through ``tf.io.gfile`` or Beam's filesystems, never ``open``/``os``.
"""

from __future__ import annotations

import logging
import os
import tempfile

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)
from tfx_bsl.public import tfxio

from trainer import config as cfg
from trainer import cost, features, layout

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
        ingest_dir: An ingest output folder (trainer/ingest/files.py).
        output_dir: Folder to write the transform graph and transformed examples to.
        beam_pipeline_args: Beam options; DirectRunner in memory when empty, DataflowRunner
            options (project, region, temp_location, ...) to scale out.

    Returns:
        The transform output, ready for the trainer.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    with tf.io.gfile.GFile(layout.schema_path(ingest_dir), "r") as f:
        text_format.Parse(f.read(), schema)
    options = pipeline_options(beam_pipeline_args)
    tf.io.gfile.makedirs(output_dir)
    temp_dir = _temp_dir(options, output_dir)
    preprocessing_fn = features.make_preprocessing_fn(feature_config)
    log.info(
        "transform: %s -> %s on %s", ingest_dir, output_dir, options.view_as(StandardOptions).runner
    )

    pipeline = beam.Pipeline(options=options)
    with tft_beam.Context(temp_dir=temp_dir):
        _build(pipeline, preprocessing_fn, ingest_dir, output_dir, schema)
    result = pipeline.run()
    result.wait_until_finish()
    _log_counters(result)
    log.info("transform: wrote %s", output_dir)
    return tft.TFTransformOutput(output_dir)


def _build(pipeline, preprocessing_fn, ingest_dir: str, output_dir: str, schema) -> None:
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


class _Encode(beam.DoFn):
    """Serialises record batches to tf.Examples, counting batches and examples per split.

    Counters, not log lines: Beam sums them over workers and Dataflow shows them live in its
    job page; the driver logs the totals when the pipeline ends.
    """

    def __init__(self, split: str):
        self.split = split
        self.batches = beam.metrics.Metrics.counter("transform", f"{split}_batches")
        self.examples = beam.metrics.Metrics.counter("transform", f"{split}_examples")

    def process(self, element):
        batch, _ = element
        self.batches.inc()
        encoded = tfxio_record_batch_to_examples(batch)
        self.examples.inc(len(encoded))
        yield from encoded


def _log_counters(result) -> None:
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("transform"))
    totals = {c.key.metric.name: c.committed for c in counters["counters"]}
    log.info("transform: Beam counters %s", dict(sorted(totals.items())))


def _write(dataset, transform_fn, output_dir: str, split: str) -> None:
    encoded = dataset | f"Encode{split}" >> beam.ParDo(_Encode(split))
    _ = encoded | f"Write{split}" >> beam.io.WriteToTFRecord(
        layout.transformed_prefix(output_dir, split),
        file_name_suffix=layout.TFRECORD_SUFFIX,
        compression_type=beam.io.filesystem.CompressionTypes.GZIP,
    )


def tfxio_record_batch_to_examples(batch) -> list[bytes]:
    """Serialises an Arrow RecordBatch of transformed features to tf.Examples."""
    from tfx_bsl.coders import example_coder

    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def pipeline_options(beam_pipeline_args: list[str] | None = None) -> PipelineOptions:
    """Beam options of a transform run: DirectRunner in memory when none are given.

    Raises:
        ValueError: a DataflowRunner run lacks what its workers need (project, region, a
            gs:// temp_location, the component image as SDK container).
    """
    args = list(beam_pipeline_args or DEFAULT_BEAM_ARGS)
    options = PipelineOptions(args)
    runner = (options.view_as(StandardOptions).runner or "").lower()
    if runner in ("dataflowrunner", "dataflow"):
        # The pipeline run's labels (its billing id among them) on the Dataflow job, which
        # Vertex does not label by itself: trainer/cost/labels.py.
        options = PipelineOptions(cost.with_run_labels(args))
        cloud = options.view_as(GoogleCloudOptions)
        worker = options.view_as(WorkerOptions)
        missing = [
            name
            for name, value in (
                ("--project", cloud.project),
                ("--region", cloud.region),
                ("--sdk_container_image", worker.sdk_container_image),
            )
            if not value
        ]
        if not str(cloud.temp_location or "").startswith("gs://"):
            missing.append("--temp_location=gs://...")
        if missing:
            raise ValueError(
                "beam_pipeline_args: a DataflowRunner run needs "
                + ", ".join(missing)
                + " (the environment file's beam_args and image set them)"
            )
    return options


def _temp_dir(options: PipelineOptions, output_dir: str) -> str:
    # tf.Transform's temp files must be where every worker can reach them.
    temp = options.view_as(GoogleCloudOptions).temp_location
    if temp:
        return temp
    if "://" in output_dir:
        return os.path.join(output_dir, "tmp")
    return tempfile.mkdtemp(prefix="tft-")
