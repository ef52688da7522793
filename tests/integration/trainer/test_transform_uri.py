"""The transform driver through the URI code path: every file it reads and writes is named
by a URI, not a local path, as gs:// is on Vertex and Dataflow.

Which filesystem: no gs:// is reachable here, and the two in-memory ones do not fit (TF's
``ram://`` is unknown to Beam and renames only single files, not the folders tf.Transform
publishes; Beam's in-memory one lives in its tests and TF cannot read it). ``file://`` URIs
fit: TensorFlow reads them natively, and Beam 2.x has no ``file`` scheme, so the test
registers one, a small adapter onto ``tf.io.gfile`` (as Beam's GCS filesystem is an adapter
onto GCS). Beam's sources and sinks (ReadFromTFRecord, WriteToTFRecord, tf.Transform's temp
files) and TensorFlow (the transform graph, TFTransformOutput) then share one filesystem
that only URI-aware code can use: ``open`` / ``os.path`` on ``file:///...`` fail, as they
would on gs://.
"""

import logging
import os
import posixpath

import pytest
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.io.filesystem import (
    CompressedFile,
    CompressionTypes,
    FileMetadata,
    FileSystem,
    MatchResult,
)

from trainer import contract, features, ingest, layout, transform

pytestmark = pytest.mark.integration  # a real Beam pipeline


class GfileFileSystem(FileSystem):
    """Beam's ``file://`` scheme, every call going to ``tf.io.gfile``."""

    @classmethod
    def scheme(cls):
        return "file"

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        return posixpath.split(path)

    def mkdirs(self, path):
        tf.io.gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        for path in tf.io.gfile.glob(dir_or_prefix + "*"):
            yield self.metadata(path)

    def match(self, patterns, limits=None):
        limits = limits or [None] * len(patterns)
        return [
            MatchResult(p, [self.metadata(f) for f in tf.io.gfile.glob(p)][:limit])
            for p, limit in zip(patterns, limits, strict=True)
        ]

    def _open(self, path, mode, compression_type):
        if compression_type == CompressionTypes.AUTO:
            compression_type = CompressionTypes.detect_compression_type(path)
        raw = tf.io.gfile.GFile(path, mode)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def create(
        self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO
    ):
        return self._open(path, "wb", compression_type)

    def open(
        self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO
    ):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        # Folders are copied whole, as Beam's local and GCS filesystems do.
        for src, dst in zip(source_file_names, destination_file_names, strict=True):
            _copy_tree(src, dst) if tf.io.gfile.isdir(src) else tf.io.gfile.copy(src, dst, True)

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return tf.io.gfile.exists(path)

    def size(self, path):
        return tf.io.gfile.stat(path).length

    def last_updated(self, path):
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


def _copy_tree(src: str, dst: str) -> None:
    tf.io.gfile.makedirs(dst)
    for name in tf.io.gfile.listdir(src):
        name = name.rstrip("/")
        source, target = posixpath.join(src, name), posixpath.join(dst, name)
        if tf.io.gfile.isdir(source):
            _copy_tree(source, target)
        else:
            tf.io.gfile.copy(source, target, overwrite=True)


def _decoded(output, transform_dir: str, split: str, fc) -> list[tuple]:
    """A split's transformed examples with vocabulary ids read back as tokens, sorted.

    Ids are compared as tokens: tf.Transform breaks frequency ties in a vocabulary in no
    fixed order from one run to the next.
    """
    files = sorted(tf.io.gfile.glob(layout.transformed_pattern(transform_dir, split)))
    assert files, (transform_dir, split)
    spec = output.transformed_feature_spec()
    vocabularies = {
        f"{f.name}__vocabulary": output.vocabulary_by_name(features.vocabulary_name(f))
        for f in features.all_features(fc)
        if f.transform == "vocabulary"
    }
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        rows.append(
            tuple(
                (k, vocabularies[k][int(v)] if k in vocabularies else v.numpy().tolist())
                for k, v in sorted(parsed.items())
            )
        )
    return sorted(rows)


def test_the_driver_reads_and_writes_uris_only(tiny_prepared, tmp_path, caplog):
    config, root = tiny_prepared
    base = f"file://{tmp_path}/uri"
    ingest_uri, output_uri = f"{base}/ingest", f"{base}/xf"
    _copy_tree(str(root / "examples"), ingest_uri)
    assert not os.path.exists(ingest_uri)  # nothing of this is on the local disk

    with caplog.at_level(logging.INFO, logger="trainer.transform.beam"):
        output = transform.run_transform(config.feature_config(), ingest_uri, output_uri)

    assert output.transform_savedmodel_dir.startswith(output_uri)
    fc, local = config.feature_config(), str(root / "xf")
    local_output = tft.TFTransformOutput(local)
    for split in contract.SPLITS:
        # The same examples as the local run (shards are written in any order).
        assert _decoded(output, output_uri, split, fc) == _decoded(local_output, local, split, fc)
    assert tf.io.gfile.exists(posixpath.join(output.transform_savedmodel_dir, "saved_model.pb"))
    # Progress: Beam's counters per split, summed over workers, in one line at the end.
    stats = ingest.load_stats(str(root / "examples"))
    counters = [r.getMessage() for r in caplog.records if "Beam counters" in r.getMessage()]
    assert len(counters) == 1
    assert f"'test_examples': {stats['rows']['test']}" in counters[0]
