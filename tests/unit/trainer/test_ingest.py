"""Ingest: cleaning counts every dropped row by reason, splits are strict, outputs are readable."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from trainer import config as cfg
from trainer import contract, ingest, inputs, layout


@pytest.fixture
def config(tiny_dataset):
    return cfg.load_config(tiny_dataset["config_path"])


def test_clean_counts_each_bad_row_once_under_its_reason(config, tiny_dataset):
    stats = ingest.IngestStats(source="tiny")
    frame = ingest.clean(ingest.read_source(config.dataset), config.dataset, stats)
    assert stats.rows_read == tiny_dataset["rows"]
    assert stats.rows_dropped == {
        "missing_buyer_id": 3,
        "bad_timestamp": 1,
        "quantity_le_0": 2,
        "cancelled": 1,
    }
    assert stats.rows_kept == stats.rows_read - 7 == len(frame)
    # Float-written ids lose their ".0"; timestamps are epoch seconds.
    assert frame[contract.BUYER_ID].str.fullmatch(r"\d+").all()
    assert frame[contract.TIMESTAMP].dtype == np.int64
    assert frame[contract.TIMESTAMP].is_monotonic_increasing


def test_missing_column_names_the_column_and_the_file(config, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("InvoiceNo,StockCode\n1,A\n")
    with pytest.raises(ingest.IngestError, match=r"wrong.csv: column\(s\) .*CustomerID"):
        ingest.read_source(config.dataset, str(path))


def test_strict_time_split_respects_the_dates(config):
    stats = ingest.IngestStats(source="tiny")
    frame = ingest.clean(ingest.read_source(config.dataset), config.dataset, stats)
    parts = ingest.split(frame, config.dataset.split)
    cut1 = pd.Timestamp("2011-09-01").value // 10**9
    cut2 = pd.Timestamp("2011-11-01").value // 10**9
    assert (parts["train"][contract.TIMESTAMP] < cut1).all()
    assert parts["eval"][contract.TIMESTAMP].between(cut1, cut2 - 1).all()
    assert (parts["test"][contract.TIMESTAMP] >= cut2).all()
    assert sum(len(p) for p in parts.values()) == len(frame)


def test_buyer_holdout_keeps_each_buyer_in_one_split(config):
    stats = ingest.IngestStats(source="tiny")
    frame = ingest.clean(ingest.read_source(config.dataset), config.dataset, stats)
    rule = cfg.Split(strategy="buyer_holdout", eval_fraction=0.2, test_fraction=0.2, seed=3)
    parts = ingest.split(frame, rule)
    owners = {}
    for name, part in parts.items():
        for buyer in part[contract.BUYER_ID].unique():
            assert owners.setdefault(buyer, name) == name
    assert all(len(p) for p in parts.values())


def test_run_ingest_writes_examples_catalog_schema_and_stats(config, tmp_path):
    out = tmp_path / "examples"
    stats = ingest.run_ingest(config, str(out))
    written = json.loads((out / contract.STATS_FILE).read_text())
    assert written["rows"] == stats.rows and sum(stats.rows.values()) == stats.rows_kept
    catalog = pd.read_parquet(out / contract.CATALOG_FILE)
    train = pd.read_parquet(out / "train.parquet")
    assert set(catalog[contract.PRODUCT_ID]) == set(train[contract.PRODUCT_ID])
    assert catalog[contract.TRAIN_COUNT].sum() == len(train)
    # The TFRecords parse with the raw feature spec and hold the same rows.
    ds = tf.data.TFRecordDataset(layout.split_path(str(out), "test", "tfrecord"), "GZIP")
    parsed = [tf.io.parse_single_example(r, inputs.raw_feature_spec()) for r in ds]
    test = pd.read_parquet(out / "test.parquet")
    assert len(parsed) == len(test)
    assert parsed[0][contract.BUYER_ID].numpy().decode() == test[contract.BUYER_ID].iloc[0]
    assert "feature {" in (out / contract.SCHEMA_FILE).read_text()
    assert os.path.getsize(layout.split_path(str(out), "train", "tfrecord")) > 0
