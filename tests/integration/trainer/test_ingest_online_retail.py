"""Chunked ingest on the real Online Retail data gives what the whole-source path gives."""

import dataclasses

import pandas as pd
import pytest

from tests.conftest import read_ingest_outputs
from trainer import config as cfg
from trainer import contract, ingest

pytestmark = pytest.mark.integration  # the real dataset, twice (about a minute)


def test_chunked_and_in_memory_ingest_agree_row_for_row(tmp_path):
    config = cfg.load_config("configs/online_retail.yaml")
    whole = dataclasses.replace(config.dataset, chunk_rows=0)
    # The rows are compared here; the strong baselines on them are tested elsewhere.
    ingest.run_ingest(
        dataclasses.replace(config, dataset=whole), str(tmp_path / "memory"), strong_baselines=False
    )
    stats = ingest.run_ingest(config, str(tmp_path / "chunked"), strong_baselines=False)
    memory, chunked = (
        read_ingest_outputs(tmp_path / "memory"),
        read_ingest_outputs(tmp_path / "chunked"),
    )
    assert stats.rows_read == 541_909 and config.dataset.chunk_rows < stats.rows_read
    for name in (*contract.SPLITS, "catalog"):
        pd.testing.assert_frame_equal(memory[name], chunked[name], check_exact=True)
    assert memory["stats"] == chunked["stats"]
    # Buyer columns are there and point-in-time (a buyer's first row has no history).
    train = chunked["train"]
    assert set(contract.DERIVED_COLUMNS) <= set(train.columns)
    assert (train[contract.HISTORY] == "").sum() > 0 and (train[contract.HISTORY] != "").sum() > 0
