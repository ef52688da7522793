"""Catalog-scale search on tiny data: chunked top-k = unchunked, exclude_seen, refit."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow_transform as tft
from mlflow.tracking import MlflowClient

from trainer import contract, inputs, layout, retrieval
from trainer.evaluate import exact as evaluate
from trainer.serving import export as serving
from trainer.train import loop as train

pytestmark = pytest.mark.integration  # Beam + TensorFlow

CHUNK = 7  # the tiny catalog has 30 products: 5 chunks, the last one short
WHOLE = 10**9  # one chunk: the unchunked path


def _with_training(config, **changes):
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


def _history_rows(queries: pd.DataFrame, catalog: pd.DataFrame) -> list[set]:
    index = retrieval.catalog_index(catalog)
    return [{index[p] for p in h.split() if p in index} for h in queries[contract.HISTORY]]


def _untrained(config, root):
    """A model with its initial weights (the search must agree for any weights)."""
    tft_output = tft.TFTransformOutput(str(root / "xf"))
    data = inputs.load_training_data(config, str(root / "examples"))
    fc, mc = config.feature_config(), config.model_config()
    two_tower = train.build_model(fc, mc, tft_output, data, config.training)
    return two_tower, tft_output, data


def test_chunked_top_k_equals_the_unchunked_path_in_process_and_served(rich_prepared, tmp_path):
    config, root = rich_prepared  # history feature and repurchase scores: the bonus per chunk
    two_tower, tft_output, data = _untrained(config, root)
    tft_layer = tft_output.transform_features_layer()
    candidates, ids = serving.embed_catalog(two_tower, tft_layer, data.catalog)
    got = serving.top_k_for_queries(
        two_tower, tft_layer, data.queries, candidates, ids, 20, chunk=CHUNK
    )
    want = serving.top_k_for_queries(
        two_tower, tft_layer, data.queries, candidates, ids, 20, chunk=WHOLE
    )
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    served = {}
    for chunk in (CHUNK, WHOLE):
        path = serving.export_serving_model(
            str(tmp_path / f"serving-{chunk}"),
            two_tower,
            tft_output,
            data.catalog,
            config.feature_config(),
            chunk=max(chunk, contract.SERVING_K),  # a chunk below k is raised to k
        )
        served[chunk] = serving.serve_top_k(serving.load_serving_model(path), data.queries)
    np.testing.assert_array_equal(served[CHUNK][0], served[WHOLE][0])
    np.testing.assert_allclose(served[CHUNK][1], served[WHOLE][1], rtol=1e-5, atol=1e-5)
    # The served lists are the in-process ones.
    rows = retrieval.catalog_index(data.catalog)
    served_rows = np.vectorize(rows.__getitem__)(served[CHUNK][0][:, :20])
    np.testing.assert_array_equal(served_rows, want[0])


def test_serving_chunks_below_k_in_the_graph(rich_prepared, tmp_path):
    config, root = rich_prepared
    two_tower, tft_output, data = _untrained(config, root)
    lists = []
    for chunk in (CHUNK, WHOLE):
        module = serving.ServingModel(
            tft_output.transform_features_layer(),
            two_tower,
            data.catalog[contract.PRODUCT_ID].to_numpy(),
            *serving.embed_catalog(two_tower, tft_output.transform_features_layer(), data.catalog),
            serving.serving_columns(config.feature_config()),
            k=5,
            chunk=chunk,
        )
        out = module.serve(inputs.raw_tensors(data.queries, module.buyer_columns))
        lists.append((out["product_ids"].numpy(), out["scores"].numpy()))
    np.testing.assert_array_equal(lists[0][0], lists[1][0])
    np.testing.assert_allclose(lists[0][1], lists[1][1], rtol=1e-5, atol=1e-5)


def test_exclude_seen_keeps_earlier_items_out_of_every_top_k(tiny_prepared, tmp_path):
    config, root = tiny_prepared  # IDs only: the serving signature takes history for the mask
    config = _with_training(config, exclude_seen=True, epochs=1)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(tmp_path / "model"), tracking_uri
    )
    serve = serving.load_serving_model(result.serving_dir)
    assert sorted(serve.structured_input_signature[1]) == [contract.BUYER_ID, contract.HISTORY]
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    assert run.data.tags[contract.TAG_BASELINES_NOT_APPLICABLE] == ",".join(
        (contract.BASELINE_OWN_HISTORY, contract.BASELINE_TIFU_KNN)
    )
    assert run.data.params["training.exclude_seen"] == "True"
    assert 0.0 <= run.data.metrics[contract.final_key(contract.val_recall_key(10))] <= 1.0

    got = evaluate.run_evaluation(
        str(tmp_path / "model"), str(root / "examples"), str(tmp_path / "eval")
    )
    data = evaluate.EvaluationData.load(str(root / "examples"))
    eval_set = retrieval.build_eval_set(data.test, data.train, data.catalog, seen=data.history)
    queries = evaluate.query_rows(config, data, eval_set)
    top = pd.read_parquet(layout.top_k_path(str(tmp_path / "eval")))
    catalog_ids = data.catalog[contract.PRODUCT_ID].to_numpy()
    for listed, seen in zip(top["product_ids"], _history_rows(queries, data.catalog), strict=True):
        assert not set(listed) & set(catalog_ids[list(seen)])  # nothing the buyer had before
        assert len(set(listed) - {""}) == len(catalog_ids) - len(seen)  # all the others
    # Buyers rebuy their favourites in the tiny data: only the new pairs are evaluated.
    everything = retrieval.build_eval_set(data.test, data.train, data.catalog)
    assert 0 < got[contract.TEST_PAIRS] == eval_set.num_pairs < everything.num_pairs
    own = {contract.baseline_recall_key(contract.BASELINE_OWN_HISTORY, k) for k in (10, 50, 100)}
    assert not own & set(got)  # not applicable: left out, not 0
    logged = MlflowClient(tracking_uri).get_run(result.run_id).data.metrics
    assert not own & set(logged)
    popular = retrieval.baseline_recalls(eval_set, data.history, data.catalog, exclude_seen=True)
    for k, value in popular[contract.BASELINE_POPULAR].items():
        assert got[contract.baseline_recall_key(contract.BASELINE_POPULAR, k)] == value
    # Every new product is listed (30 products), so recall@100 counts every pair.
    assert got[contract.test_recall_key(100)] == pytest.approx(1.0)


def test_refit_exports_the_model_refit_on_train_and_eval_and_logs_both_test_recalls(
    tiny_prepared, tmp_path
):
    config, root = tiny_prepared
    config = _with_training(config, refit=True, epochs=2)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    model_dir = tmp_path / "model"
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(model_dir), tracking_uri
    )
    client = MlflowClient(tracking_uri)
    refit_loss = client.get_metric_history(result.run_id, contract.refit_key(contract.METRIC_LOSS))
    assert sorted(m.step for m in refit_loss) == list(range(1, result.best_epoch + 1))
    assert client.get_metric_history(
        result.run_id, contract.refit_key(contract.METRIC_EPOCH_SECONDS)
    )
    loss = client.get_metric_history(result.run_id, contract.METRIC_LOSS)
    assert sorted(m.step for m in loss) == [1, 2]  # the first fit's curve is untouched
    assert (model_dir / contract.SELECTED_SERVING_DIR).is_dir()

    got = evaluate.run_evaluation(str(model_dir), str(root / "examples"), str(tmp_path / "eval"))
    logged = client.get_run(result.run_id).data.metrics
    for k in contract.RECALL_KS:
        for key in (contract.test_recall_key(k), contract.selected_test_recall_key(k)):
            assert 0.0 <= got[key] <= 1.0 and logged[key] == pytest.approx(got[key])
    test_rows = pd.read_parquet(layout.per_buyer_path(str(tmp_path / "eval"), "test"))
    val_rows = pd.read_parquet(layout.per_buyer_path(str(tmp_path / "eval"), "eval"))
    assert contract.SCORER_SELECTED in set(test_rows[contract.SCORER])
    # On validation only the model that never saw it competes: the selected one, as "model".
    assert contract.SCORER_SELECTED not in set(val_rows[contract.SCORER])
    val_model = val_rows[val_rows[contract.SCORER] == contract.SCORER_MODEL]
    best_val = logged[contract.best_key(contract.val_recall_key(10))]
    assert val_model[contract.hits_column(10)].sum() / val_model[contract.PAIRS].sum() == (
        pytest.approx(best_val)
    )
    # The two models differ: the exported one was retrained on train + eval.
    data = evaluate.EvaluationData.load(str(root / "examples"))
    queries = data.test.drop_duplicates(contract.BUYER_ID).head(5)
    refit_scores = serving.serve_top_k(serving.load_serving_model(result.serving_dir), queries)
    selected = serving.load_serving_model(str(model_dir / contract.SELECTED_SERVING_DIR))
    assert not np.allclose(refit_scores[1], serving.serve_top_k(selected, queries)[1])
