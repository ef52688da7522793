"""The transform driver on a tiny ingest folder: Beam DirectRunner, vocabularies from train only."""

import gzip

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from trainer import config as cfg
from trainer import contract, features, ingest, layout, transform

pytestmark = pytest.mark.integration  # a real Beam pipeline

# (invoice, product, date, buyer): train before March, eval in March, test from April.
ROWS = [
    (1, "P1", "2011-01-05", "b1"),
    (1, "P2", "2011-01-05", "b1"),
    (2, "P1", "2011-01-20", "b2"),
    (3, "P1", "2011-02-03", "b1"),
    (4, "P2", "2011-02-10", "b3"),
    (5, "P1", "2011-03-04", "b1"),
    (6, "P3", "2011-03-09", "b2"),
    (7, "P2", "2011-04-02", "b3"),
]
CONFIG = """
experiment: transform-test
dataset:
  name: few_rows
  source: {source}
  columns: {{buyer_id: CustomerID, product_id: StockCode, timestamp: InvoiceDate,
            transaction_id: InvoiceNo}}
  timestamp_format: "%Y-%m-%d"
  split: {{strategy: strict_time, train_end: 2011-03-01, eval_end: 2011-04-01}}
feature_configs:
  - id: f
    buyer:
      - {{name: buyer_id, transform: vocabulary}}
      - {{name: history, transform: history, max_length: 3}}
    product:
      - {{name: product_id, transform: vocabulary}}
model_configs:
  - id: m
"""


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    root = tmp_path_factory.mktemp("transform")
    source = root / "rows.csv.gz"
    with gzip.open(source, "wt", encoding="utf-8") as f:
        f.write("InvoiceNo,StockCode,InvoiceDate,CustomerID\n")
        f.writelines(f"{i},{p},{d},{b}\n" for i, p, d, b in ROWS)
    config = cfg.parse_config_text(CONFIG.format(source=source))
    ingest.run_ingest(config, str(root / "ingest"))
    output = transform.run_transform(
        config.feature_config(), str(root / "ingest"), str(root / "xf")
    )
    return config.feature_config(), root, output


def _examples(root, output, split: str) -> list[dict]:
    files = tf.io.gfile.glob(layout.transformed_pattern(str(root / "xf"), split))
    assert files, split
    spec = output.transformed_feature_spec()
    return [
        {k: v.numpy().tolist() for k, v in tf.io.parse_single_example(r, spec).items()}
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def test_vocabularies_are_analysed_on_the_train_split_only(transformed):
    fc, root, output = transformed
    product = fc.product[0]
    # Train has P1 three times and P2 twice; P3 is only bought in eval.
    assert output.vocabulary_by_name(features.vocabulary_name(product)) == [b"P1", b"P2"]
    buyers = output.vocabulary_by_name(features.vocabulary_name(fc.buyer[0]))
    assert buyers[0] == b"b1" and sorted(buyers) == [b"b1", b"b2", b"b3"]
    reread = tft.TFTransformOutput(str(root / "xf"))
    assert reread.vocabulary_size_by_name(features.vocabulary_name(product)) == 2


def test_every_split_is_transformed_with_the_train_graph(transformed):
    fc, root, output = transformed
    for split in contract.SPLITS:
        rows = pd.read_parquet(layout.split_path(str(root / "ingest"), split))
        examples = _examples(root, output, split)
        assert len(examples) == len(rows), split
        assert set(examples[0]) == {features.transformed_name(f) for f in features.all_features(fc)}
    eval_ids = sorted(e[features.PRODUCT_KEY] for e in _examples(root, output, "eval"))
    assert eval_ids == [0, 2]  # P1, and P3 in the OOV bucket after the 2-word vocabulary
    test = _examples(root, output, "test")
    # b3 bought P2 before April: the history holds P2's id, padded to max_length.
    assert test[0]["history__history"] == [1, features.PAD, features.PAD]
