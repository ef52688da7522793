"""Ingest: cleaning counts every dropped row by reason, splits are strict, outputs are readable."""

import dataclasses
import datetime as dt
import json
import logging
import os
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import read_ingest_outputs
from trainer import config as cfg
from trainer import contract, inputs, layout
from trainer.ingest import files as ingest
from trainer.ingest import output as ingest_output


@pytest.fixture
def config(tiny_dataset):
    return cfg.load_config(tiny_dataset["config_path"])


def test_clean_counts_each_bad_row_once_under_its_reason(config, tiny_dataset):
    stats = ingest_output.IngestStats(source="tiny")
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
    assert ingest.sort_rows(frame)[contract.TIMESTAMP].is_monotonic_increasing


def test_missing_column_names_the_column_and_the_file(config, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("InvoiceNo,StockCode\n1,A\n")
    with pytest.raises(
        ingest.IngestError, match=r"wrong.csv: dataset.columns: column\(s\) .*CustomerID"
    ):
        ingest.read_source(config.dataset, str(path))


def test_strict_time_split_respects_the_dates(config):
    stats = ingest_output.IngestStats(source="tiny")
    frame = ingest.clean(ingest.read_source(config.dataset), config.dataset, stats)
    parts = ingest.split(frame, config.dataset.split)
    cut1 = pd.Timestamp("2011-09-01").value // 10**9
    cut2 = pd.Timestamp("2011-11-01").value // 10**9
    assert (parts["train"][contract.TIMESTAMP] < cut1).all()
    assert parts["eval"][contract.TIMESTAMP].between(cut1, cut2 - 1).all()
    assert (parts["test"][contract.TIMESTAMP] >= cut2).all()
    assert sum(len(p) for p in parts.values()) == len(frame)


def test_buyer_holdout_keeps_each_buyer_in_one_split(config):
    stats = ingest_output.IngestStats(source="tiny")
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


# --- checks before any compute, and sources in the layouts users have ---------------------


def _with(config: cfg.ExperimentConfig, **dataset) -> cfg.ExperimentConfig:
    split = dataset.pop("split", None)
    if split:
        dataset["split"] = dataclasses.replace(config.dataset.split, **split)
    return dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, **dataset))


def _assert_same(a: dict, b: dict) -> None:
    for name in (*contract.SPLITS, "catalog"):
        pd.testing.assert_frame_equal(a[name], b[name])
    assert a["stats"] == b["stats"]


def _raw(tiny_dataset) -> pd.DataFrame:
    return pd.read_csv(tiny_dataset["source"], dtype=str, keep_default_na=False)


def test_every_timestamp_malformed_shows_two_samples_and_the_format(config, tiny_dataset, tmp_path):
    raw = _raw(tiny_dataset)
    raw["InvoiceDate"] = "12/" + raw["InvoiceDate"].str[:10]  # "12/2011-05-01" never parses
    raw.to_csv(tmp_path / "dates.csv", index=False)
    # Ingest (and `pipelines run` before starting) refuse it on the file's first rows ...
    with pytest.raises(cfg.ConfigError) as info:
        ingest.run_ingest(config, str(tmp_path / "out"), source=str(tmp_path / "dates.csv"))
    assert info.value.field == "dataset.timestamp_format"
    assert "100 of 100 values of column 'InvoiceDate' do not parse" in info.value.problem
    # ... and cleaning on the whole column, chunk by chunk.
    dates = _with(config, source=str(tmp_path / "dates.csv")).dataset
    with pytest.raises(ingest.IngestError) as info:
        ingest.clean(
            ingest.read_source(dates), dates, ingest_output.IngestStats(source="dates.csv")
        )
    err = info.value
    assert isinstance(err, cfg.ConfigError) and err.field == "dataset.timestamp_format"
    assert f"{len(raw) - 3} of {len(raw) - 3} values of column 'InvoiceDate'" in err.problem
    samples = re.search(r"\(e\.g\. '([^']+)', '([^']+)'\)", err.problem)
    assert samples and all(s.startswith("12/") for s in samples.groups())
    assert "expected timestamps in the format '%Y-%m-%d %H:%M:%S'" in err.problem
    assert not os.path.exists(tmp_path / "out" / contract.STATS_FILE)


def test_a_number_column_that_mostly_fails_to_parse_is_an_error(config, tiny_dataset, tmp_path):
    raw = _raw(tiny_dataset)
    raw.loc[raw.index[: len(raw) * 2 // 3], "Quantity"] = "two"
    raw.to_csv(tmp_path / "qty.csv", index=False)
    with pytest.raises(ingest.IngestError, match=r"dataset.columns.quantity: .*'Quantity'.*'two'"):
        ingest.run_ingest(config, str(tmp_path / "out"), source=str(tmp_path / "qty.csv"))


@pytest.mark.parametrize(
    "split, name, says",
    [
        (
            {"eval_end": dt.date(2012, 6, 1)},
            "test",
            "the test split (from 2012-06-01 on) has no rows",
        ),
        (
            {"train_end": dt.date(2011, 9, 29), "eval_end": dt.date(2011, 9, 30)},
            "eval",
            "the eval split (from 2011-09-29 to before 2011-09-30) has no rows",
        ),
        (
            {"train_end": dt.date(2010, 6, 1), "eval_end": dt.date(2011, 1, 1)},
            "train",
            "the train split (before 2010-06-01) has no rows",
        ),
    ],
)
def test_an_empty_split_fails_in_ingest_naming_it_its_dates_and_counts(
    config, tmp_path, split, name, says
):
    with pytest.raises(cfg.ConfigError) as info:
        ingest.run_ingest(_with(config, split=split), str(tmp_path / "out"))
    assert info.value.field == "dataset.split" and says in info.value.problem
    assert f"{name}: 0 rows, 0 buyers, 0 products" in info.value.problem


def test_a_split_with_no_buyer_known_from_train_fails(config, tiny_dataset, tmp_path):
    raw = _raw(tiny_dataset)
    late = raw["InvoiceDate"] >= "2011-11"
    raw.loc[late, "CustomerID"] = "99" + raw.loc[late, "CustomerID"]  # test buyers all new
    raw.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(ingest.IngestError, match=r"the test split .* has no buyer or product seen"):
        ingest.run_ingest(config, str(tmp_path / "out"), source=str(tmp_path / "new.csv"))


def test_ingest_checks_the_source_first(config, tmp_path):
    with pytest.raises(cfg.ConfigError, match="dataset.source: file not found"):
        ingest.run_ingest(config, str(tmp_path / "out"), source=str(tmp_path / "none.csv"))


def test_source_layouts_give_the_same_examples(config, tiny_dataset, tmp_path):
    base = _outputs_of(config, tmp_path / "base")
    raw = _raw(tiny_dataset)
    stamps = pd.to_datetime(raw["InvoiceDate"], errors="coerce")
    seconds = (stamps - pd.Timestamp(0)) // pd.Timedelta("1s")

    def epoch(scale: int) -> pd.Series:  # the one malformed date stays malformed
        return seconds.map(lambda v: "x" if pd.isna(v) else str(int(v) * scale))

    # Semicolons, no header row: columns by position ("0", "1", ...); epoch seconds.
    by_position = raw.assign(InvoiceDate=epoch(1))
    by_position.to_csv(tmp_path / "pos.csv", sep=";", header=False, index=False)
    positions = {
        name: str(list(raw.columns).index(src)) for name, src in config.dataset.columns.items()
    }
    layout_config = _with(
        config,
        source=str(tmp_path / "pos.csv"),
        columns=positions,
        csv=cfg.Csv(delimiter=";", header=False),
        timestamp_format="epoch_s",
    )
    _assert_same(base, _outputs_of(layout_config, tmp_path / "pos"))
    # Tabs, no header, named columns, epoch milliseconds, split over a gzip'd and a plain file.
    millis = raw.assign(InvoiceDate=epoch(1000))
    half = len(millis) // 2
    millis[:half].to_csv(tmp_path / "part-1.tsv.gz", sep="\t", header=False, index=False)
    millis[half:].to_csv(tmp_path / "part-2.tsv", sep="\t", header=False, index=False)
    named = _with(
        config,
        source=str(tmp_path / "part-?.tsv*"),
        csv=cfg.Csv(delimiter="\t", header=False, names=tuple(raw.columns)),
        timestamp_format="epoch_ms",
    )
    _assert_same(base, _outputs_of(named, tmp_path / "glob"))
    # Parquet.
    raw.to_parquet(tmp_path / "rows.parquet")
    _assert_same(
        base, _outputs_of(_with(config, source=str(tmp_path / "rows.parquet")), tmp_path / "pq")
    )
    # Parquet at a URI: read in place through tf.io.gfile, as on gs://.
    uri = f"file://{tmp_path / 'rows.parquet'}"
    _assert_same(base, _outputs_of(_with(config, source=uri), tmp_path / "pq-uri"))


def test_a_glob_that_matches_nothing_names_the_pattern(config, tmp_path):
    with pytest.raises(cfg.ConfigError, match=r"dataset.source: no file matches .*nothing-\*.csv"):
        ingest.run_ingest(
            _with(config, source=str(tmp_path / "nothing-*.csv")), str(tmp_path / "o")
        )


def _outputs_of(config, folder, **kw) -> dict:
    ingest.run_ingest(config, str(folder), **kw)
    return read_ingest_outputs(folder)


@pytest.mark.parametrize(
    "split",
    [
        {},
        {"strategy": "random", "seed": 5, "eval_fraction": 0.2, "test_fraction": 0.2},
        {"strategy": "buyer_holdout", "seed": 3, "eval_fraction": 0.2, "test_fraction": 0.2},
    ],
)
def test_chunked_partitions_give_what_the_whole_source_in_memory_gives(config, tmp_path, split):
    config = _with(config, split=split) if split else config
    whole = _outputs_of(_with(config, chunk_rows=0), tmp_path / "memory")
    chunked = _outputs_of(_with(config, chunk_rows=700), tmp_path / "chunks", partitions=3)
    _assert_same(whole, chunked)
    assert whole["stats"]["rows_read"] == chunked["stats"]["rows_read"] > 700 * 3


def test_ingest_reports_progress_in_a_few_lines(config, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trainer"):
        ingest.run_ingest(_with(config, chunk_rows=500), str(tmp_path / "o"), partitions=20)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("rows so far (now in" in line for line in lines) == 1  # one per file, then per 30 s
    written = [line for line in lines if "buyer partitions written" in line]
    assert 1 < len(written) <= 11 and re.match(r"ingest: (\d+)/\1 buyer partitions", written[-1])


def test_every_tfrecord_example_holds_its_parquet_row(config, tmp_path):
    out = str(tmp_path / "examples")
    ingest.run_ingest(config, out)
    spec = inputs.raw_feature_spec()
    for name in contract.SPLITS:
        frame = pd.read_parquet(layout.split_path(out, name))
        records = tf.data.TFRecordDataset(layout.split_path(out, name, "tfrecord"), "GZIP")
        parsed = [tf.io.parse_single_example(r, spec) for r in records]
        assert len(parsed) == len(frame)
        for column in spec:
            values = [p[column].numpy() for p in parsed]
            if contract.RAW_COLUMN_TYPES[column] == contract.STRING:
                assert [v.decode() for v in values] == frame[column].tolist(), column
            else:
                np.testing.assert_array_equal(values, frame[column].to_numpy(values[0].dtype))
