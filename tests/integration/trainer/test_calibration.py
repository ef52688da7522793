"""training.calibrate_repurchase on the tiny data: the scale chosen on validation, and a run with it."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow_transform as tft
from mlflow.tracking import MlflowClient

from trainer import contract, evaluate, inputs, retrieval, serving
from trainer.tracking.tracker import RunTracker
from trainer.train import calibration, callbacks
from trainer.train import loop as train

pytestmark = pytest.mark.integration  # Beam + TensorFlow


def _with_training(config, **changes):
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **changes))


def _model(config, root):
    tft_output = tft.TFTransformOutput(str(root / "xf"))
    data = inputs.load_training_data(config, str(root / "examples"))
    two_tower = train.build_model(
        config.feature_config(), config.model_config(), tft_output, data, config.training
    )
    return two_tower, tft_output.transform_features_layer(), data


def _tracker(tmp_path):
    tracker = RunTracker(
        f"sqlite:///{tmp_path}/mlflow.db", "calibration", backlog_dir=str(tmp_path)
    )
    tracker.start("calibration", {}, {})
    return tracker


def _recall(two_tower, tft_layer, data):
    return callbacks.validation_recalls(
        two_tower, tft_layer, data.queries, data.catalog, data.eval_set
    )


@pytest.mark.parametrize(
    "weight, best",
    [
        # The tiny data's buyers rebuy their favourites: a negative repurchase part hides them
        # (the smallest factor hurts least), a small positive one lifts them (the largest
        # helps most). The untrained dense scores spread ~0.03, so these weights matter; the
        # tiny catalog (30) is inside the top 50, so recall@10 decides.
        (-0.02, min(contract.REPURCHASE_SCALES)),
        (0.005, max(contract.REPURCHASE_SCALES)),
    ],
)
def test_the_factor_best_on_validation_is_kept_and_logged(rich_prepared, tmp_path, weight, best):
    config, root = rich_prepared
    two_tower, tft_layer, data = _model(config, root)
    two_tower.rank_weights.assign(np.full(two_tower.rank_weights.shape, weight, np.float32))
    dense = [v.numpy() for v in two_tower.product_tower.trainable_variables]
    at_one = _recall(two_tower, tft_layer, data)
    tracker = _tracker(tmp_path)

    chosen = calibration.calibrate_repurchase(two_tower, tft_layer, data, tracker, str(tmp_path))
    tracker.finish(contract.STATUS_FINISHED)

    assert chosen == best
    np.testing.assert_allclose(two_tower.rank_weights.numpy(), weight * best, rtol=1e-6)
    for before, after in zip(dense, two_tower.product_tower.trainable_variables):
        np.testing.assert_array_equal(before, after.numpy())  # only the sparse part moves
    got = _recall(two_tower, tft_layer, data)
    assert got[10] > at_one[10]
    table = json.loads((tmp_path / contract.CALIBRATION_FILE).read_text())
    assert table["chosen"] == best
    assert [row["scale"] for row in table["scales"]] == list(contract.REPURCHASE_SCALES)
    rows = {row["scale"]: row for row in table["scales"]}
    for k in contract.RECALL_KS:  # each row is what that factor scores, 1.0 the model as trained
        assert rows[best][contract.val_recall_key(k)] == pytest.approx(got[k])
        assert rows[1.0][contract.val_recall_key(k)] == pytest.approx(at_one[k])
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run_id)
    assert run.data.metrics[contract.REPURCHASE_SCALE] == best
    assert run.data.metrics[contract.calibrated_val_recall_key(100)] == pytest.approx(got[100])


def test_a_model_without_a_repurchase_part_is_left_alone(tiny_prepared, tmp_path):
    config, root = tiny_prepared  # IDs only: no history, no sparse part
    two_tower, tft_layer, data = _model(config, root)
    tracker = _tracker(tmp_path)
    assert (
        calibration.calibrate_repurchase(two_tower, tft_layer, data, tracker, str(tmp_path)) is None
    )
    tracker.finish(contract.STATUS_FINISHED)
    assert not (tmp_path / contract.CALIBRATION_FILE).exists()
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run_id)
    assert contract.REPURCHASE_SCALE not in run.data.metrics


def test_a_calibrated_refit_run_logs_the_scale_and_exports_scaled_models(rich_prepared, tmp_path):
    config, root = rich_prepared
    config = _with_training(config, refit=True, calibrate_repurchase=True, epochs=2)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    model_dir = tmp_path / "model"
    result = train.run_training(
        config, str(root / "examples"), str(root / "xf"), str(model_dir), tracking_uri
    )
    client = MlflowClient(tracking_uri)
    logged = client.get_run(result.run_id).data.metrics
    table = json.loads((model_dir / contract.CALIBRATION_FILE).read_text())
    assert logged[contract.REPURCHASE_SCALE] == table["chosen"]
    # The factor 1 reproduces the selected model, so calibration never loses validation recall.
    best = logged[contract.best_key(contract.SELECTION_METRIC)]
    assert logged[contract.calibrated_val_recall_key(100)] >= best - 1e-9
    rows = {row["scale"]: row[contract.SELECTION_METRIC] for row in table["scales"]}
    assert rows[1.0] == pytest.approx(best)
    artifacts = [f.path for f in client.list_artifacts(result.run_id)]
    assert contract.CALIBRATION_FILE in artifacts
    # The exported selected model scores validation as the chosen factor did.
    selected = serving.load_serving_model(str(model_dir / contract.SELECTED_SERVING_DIR))
    data = inputs.load_training_data(config, str(root / "examples"))
    ids, _ = serving.serve_top_k(selected, data.queries)
    index = retrieval.catalog_index(data.catalog)
    top = np.vectorize(lambda p: index.get(p, -1))(ids)
    served = retrieval.recall_at_k(top, data.eval_set)
    chosen_row = next(r for r in table["scales"] if r["scale"] == table["chosen"])
    for k in contract.RECALL_KS:
        assert served[k] == pytest.approx(chosen_row[contract.val_recall_key(k)])
    got = evaluate.run_evaluation(str(model_dir), str(root / "examples"), str(tmp_path / "eval"))
    assert 0.0 <= got[contract.test_recall_key(10)] <= 1.0
