"""The frames an evaluation reads from an ingest folder, and the test queries built from them."""

from __future__ import annotations

import dataclasses

import pandas as pd

from trainer import config as cfg
from trainer import ingest, inputs, layout, retrieval


@dataclasses.dataclass
class EvaluationData:
    """The frames evaluation reads from the ingest folder."""

    train: pd.DataFrame
    history: pd.DataFrame  # train and eval: everything before the test split
    test: pd.DataFrame
    catalog: pd.DataFrame
    eval: pd.DataFrame  # the validation split
    # The strong baselines' lists, computed once by ingest (empty for older ingest outputs).
    strong: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @classmethod
    def load(cls, ingest_dir: str) -> EvaluationData:
        """Reads the splits, the catalog and the strong baselines of an ingest folder."""
        train = pd.read_parquet(layout.split_path(ingest_dir, "train"))
        eval_frame = pd.read_parquet(layout.split_path(ingest_dir, "eval"))
        test = pd.read_parquet(layout.split_path(ingest_dir, "test"))
        catalog = pd.read_parquet(layout.catalog_path(ingest_dir))
        strong = ingest.read_strong_baselines(ingest_dir)
        return cls(train, pd.concat([train, eval_frame]), test, catalog, eval_frame, strong)


def query_rows(
    config: cfg.ExperimentConfig, data: EvaluationData, eval_set: retrieval.EvalSet
) -> pd.DataFrame:
    """The test buyers' raw features as of the test split's start, from earlier rows only."""
    return inputs.query_frame(
        data.history,
        eval_set.buyers,
        inputs.as_of_time(data.history, data.test),
        inputs.query_history_length(config, data.history),
    )
