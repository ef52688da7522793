"""Chunked ingest on the real Online Retail data gives what the whole-source path gives."""

import dataclasses

import pandas as pd
import pytest

from trainer import config as cfg
from trainer import contract, ingest, layout

pytestmark = pytest.mark.integration  # the real dataset, twice (about a minute)


def _outputs(folder) -> dict:
    out = {}
    for name in contract.SPLITS:
        frame = pd.read_parquet(layout.split_path(str(folder), name))
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    out["catalog"] = pd.read_parquet(layout.catalog_path(str(folder)))
    out["stats"] = {k: v for k, v in ingest.load_stats(str(folder)).items() if k != "source"}
    return out


def test_chunked_and_in_memory_ingest_agree_row_for_row(tmp_path):
    config = cfg.load_config("configs/online_retail.yaml")
    whole = dataclasses.replace(config.dataset, chunk_rows=0)
    ingest.run_ingest(dataclasses.replace(config, dataset=whole), str(tmp_path / "memory"))
    stats = ingest.run_ingest(config, str(tmp_path / "chunked"))
    memory, chunked = _outputs(tmp_path / "memory"), _outputs(tmp_path / "chunked")
    assert stats.rows_read == 541_909 and config.dataset.chunk_rows < stats.rows_read
    for name in (*contract.SPLITS, "catalog"):
        pd.testing.assert_frame_equal(memory[name], chunked[name], check_exact=True)
    assert memory["stats"] == chunked["stats"]
    # Buyer columns are there and point-in-time (a buyer's first row has no history).
    train = chunked["train"]
    assert set(contract.DERIVED_COLUMNS) <= set(train.columns)
    assert (train[contract.HISTORY] == "").sum() > 0 and (train[contract.HISTORY] != "").sum() > 0
