"""Source checks before any compute: each bad source names the file, the field and the fault."""

import dataclasses
import gzip

import pandas as pd
import pytest

from tests.conftest import TINY_CONFIG, write_tiny_retail_csv
from trainer import config as cfg
from trainer import sources


def _config(source) -> cfg.ExperimentConfig:
    return cfg.parse_config_text(TINY_CONFIG.format(source=source), source="exp.yaml")


def _error(source) -> cfg.ConfigError:
    with pytest.raises(cfg.ConfigError) as info:
        sources.check_source(_config(source))
    assert info.value.source == "exp.yaml"
    return info.value


def test_a_good_csv_and_parquet_pass(tmp_path):
    csv = tmp_path / "ok.csv.gz"
    write_tiny_retail_csv(csv)
    sources.check_source(_config(csv))
    parquet = tmp_path / "ok.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    sources.check_source(_config(parquet))


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
    sources.check_source(_config("gs://bucket/data.csv"))


def test_a_file_without_header_is_checked_by_position_and_its_timestamps(tmp_path):
    csv = tmp_path / "ok.csv.gz"
    write_tiny_retail_csv(csv)
    raw = pd.read_csv(csv, dtype=str)
    raw.to_csv(tmp_path / "plain.txt", sep="|", header=False, index=False)
    config = _config(tmp_path / "plain.txt")
    layout = dataclasses.replace(
        config.dataset,
        csv=cfg.Csv(delimiter="|", header=False),
        columns={n: str(list(raw.columns).index(s)) for n, s in config.dataset.columns.items()},
    )
    sources.check_source(dataclasses.replace(config, dataset=layout))
    wrong_format = dataclasses.replace(layout, timestamp_format="%d/%m/%Y %H:%M")
    with pytest.raises(cfg.ConfigError) as info:
        sources.check_source(dataclasses.replace(config, dataset=wrong_format))
    assert info.value.field == "dataset.timestamp_format"
    assert "expected timestamps in the format '%d/%m/%Y %H:%M'" in info.value.problem
    # The default layout reads the first row as a header: the mapped names are not there.
    with pytest.raises(cfg.ConfigError, match="'CustomerID' is not in .*plain.txt"):
        sources.check_source(config)


def test_every_file_of_a_glob_is_checked(tmp_path):
    write_tiny_retail_csv(tmp_path / "a-1.csv.gz")
    (tmp_path / "a-2.csv").write_text("InvoiceNo,StockCode\n1,A\n")
    err = _error(tmp_path / "a-*.csv*")
    assert err.field == "dataset.columns.buyer_id" and "a-2.csv" in err.problem
    assert "no file matches" in _error(tmp_path / "b-*.csv").problem
