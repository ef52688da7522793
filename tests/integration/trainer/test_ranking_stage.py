"""training.ranking_stage on the tiny data: a real training, its served lists re-ranked."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainer import contract, evaluate, layout, retrieval
from trainer.evaluate import scored as scored_lists
from trainer.train import loop as train

pytestmark = pytest.mark.integration  # Beam + TensorFlow


def _with_training(config, **changes):
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


@pytest.fixture(scope="module")
def ranked_run(rich_prepared, tmp_path_factory):
    """A refit run of the rich config with the ranking stage, evaluated once."""
    config, root = rich_prepared
    config = _with_training(config, ranking_stage=True, refit=True, epochs=2)
    folder = tmp_path_factory.mktemp("ranked")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(folder / "model"), tracking_uri
    )
    metrics = evaluate.run_evaluation(
        str(folder / "model"), str(root / "examples"), str(folder / "eval")
    )
    return config, root, folder, result, metrics, tracking_uri


def _recall(top, eval_set):
    return retrieval.recall_at_k(top, eval_set)


def test_the_retrieval_stage_alone_is_the_served_model_and_the_decision_is_logged(ranked_run):
    config, root, folder, result, metrics, tracking_uri = ranked_run
    data = evaluate.EvaluationData.load(str(root / "examples"))
    # The same model without the stage: its served lists on both splits.
    plain = scored_lists.scored_lists(
        str(folder / "model"), _with_training(config, ranking_stage=False), data
    )
    served_test = _recall(plain.test[contract.SCORER_MODEL], plain.test_set)
    served_val = _recall(plain.val[contract.SCORER_MODEL], plain.val_set)
    logged = MlflowClient(tracking_uri).get_run(result.run_id).data
    kept = logged.metrics[contract.RANKING_KEPT]
    assert kept in (0.0, 1.0)
    assert logged.tags[contract.TAG_RANKING].startswith("kept: " if kept else "dropped: ")
    for k in contract.RECALL_KS:  # the stage's figure on validation sits beside retrieval's
        assert logged.metrics[contract.retrieval_val_recall_key(k)] == pytest.approx(served_val[k])
        assert 0.0 <= logged.metrics[contract.ranking_val_recall_key(k)] <= 1.0
    rows = pd.read_parquet(layout.per_buyer_path(str(folder / "eval"), "test"))
    scorers = set(rows[contract.SCORER])
    if kept:
        assert contract.SCORER_RETRIEVAL in scorers
        for k in contract.RECALL_KS:
            assert metrics[contract.retrieval_test_recall_key(k)] == pytest.approx(served_test[k])
            lift = metrics[contract.test_recall_key(k)] - served_test[k]
            assert logged.metrics[contract.ranking_lift_key(k)] == pytest.approx(lift)
    else:
        assert contract.SCORER_RETRIEVAL not in scorers
        for k in contract.RECALL_KS:
            assert metrics[contract.test_recall_key(k)] == pytest.approx(served_test[k])
    # The retrieval stage is never compared as if it were a baseline.
    assert not any(contract.SCORER_RETRIEVAL in tag for tag in logged.tags if "verdict" in tag)
    listed = {
        a.path for a in MlflowClient(tracking_uri).list_artifacts(result.run_id, "evaluation")
    }
    assert f"{contract.EVALUATION_ARTIFACT_DIR}/{contract.RANKING_FILE}" in listed
    assert f"{contract.EVALUATION_ARTIFACT_DIR}/{contract.RANKER_FILE}" in listed


def test_the_top_k_file_holds_the_lists_the_model_rows_count(ranked_run):
    config, root, folder, result, metrics, _ = ranked_run
    data = evaluate.EvaluationData.load(str(root / "examples"))
    top_k = pd.read_parquet(layout.top_k_path(str(folder / "eval")))
    test_set = retrieval.build_eval_set(data.test, data.train, data.catalog)
    assert top_k[contract.BUYER_ID].astype(str).tolist() == test_set.buyers.astype(str).tolist()
    index = retrieval.catalog_index(data.catalog)
    top = np.array([[index.get(p, -1) for p in ids] for ids in top_k["product_ids"]])
    got = _recall(top, test_set)
    for k in contract.RECALL_KS:
        assert got[k] == pytest.approx(metrics[contract.test_recall_key(k)])
    scores = np.stack(top_k["scores"].to_numpy())
    assert (np.diff(scores[:, : min(30, scores.shape[1])], axis=1) <= 1e-6).all()
