"""Source checks before any compute: each bad source names the file, the field and the fault."""

import gzip

import pandas as pd
import pytest

from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from trainer import config as cfg
from trainer import preflight


def _config(source) -> cfg.ExperimentConfig:
    return cfg.parse_config_text(TINY_CONFIG.format(source=source), source="exp.yaml")


def _error(source) -> cfg.ConfigError:
    with pytest.raises(cfg.ConfigError) as info:
        preflight.check_source(_config(source))
    assert info.value.source == "exp.yaml"
    return info.value


def test_a_good_csv_and_parquet_pass(tmp_path):
    csv = tmp_path / "ok.csv.gz"
    write_tiny_retail_csv(csv)
    preflight.check_source(_config(csv))
    parquet = tmp_path / "ok.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    preflight.check_source(_config(parquet))


def test_a_missing_file(tmp_path):
    err = _error(tmp_path / "nope.csv")
    assert err.field == "dataset.source" and "file not found" in err.problem


def test_an_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    err = _error(tmp_path / "empty.csv")
    assert err.field == "dataset.source" and "empty (0 bytes)" in err.problem


def test_a_gzip_of_nothing(tmp_path):
    with gzip.open(tmp_path / "empty.csv.gz", "wb"):
        pass
    assert "is empty" in _error(tmp_path / "empty.csv.gz").problem


def test_a_missing_mapped_column_names_the_field_and_the_columns_present(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("InvoiceNo,StockCode,InvoiceDate,Quantity\n1,A,2011-01-01 10:00:00,1\n")
    err = _error(path)
    assert err.field == "dataset.columns.buyer_id"
    assert "'CustomerID' is not in" in err.problem and "it has: InvoiceNo, StockCode" in err.problem


def test_a_file_that_is_not_csv_text(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00binary\x00")
    assert "not UTF-8" in _error(path).problem


def test_remote_sources_are_left_to_the_worker():
    preflight.check_source(_config("gs://bucket/data.csv"))
