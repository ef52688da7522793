"""The served model as an MLflow model: logged by training, loaded fresh, served over REST."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.integration.conftest import free_port
from trainer import config as cfg
from trainer import contract, evaluate, inputs, layout, registry, serving, tracking, train

pytestmark = pytest.mark.integration  # Beam + TensorFlow + an MLflow model server

SERVE_START_S = 180


@pytest.fixture(scope="module")
def logged(tiny_prepared, tmp_path_factory):
    """One tracked tiny training; its run, folders and 7 validation buyers' raw rows."""
    config, root = tiny_prepared
    folder = tmp_path_factory.mktemp("mlflow-model")
    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    result = train.run_training(
        config,
        str(root / "examples"),
        str(root / "xf"),
        str(folder / "model"),
        tracking_uri=tracking_uri,
        run_key="mlflow-model-run",
    )
    data = inputs.load_training_data(config, str(root / "examples"))
    queries = data.queries.head(7).reset_index(drop=True)
    return result, folder, tracking_uri, queries


def _fresh_env(tracking_uri: str) -> dict:
    """A process that sees the installed package only: no PYTHONPATH, run from elsewhere."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # As in an activated virtualenv: mlflow models serve starts uvicorn from PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(MLFLOW_TRACKING_URI=tracking_uri, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _saved_model_answers(serving_dir: str, queries: pd.DataFrame):
    return serving.serve_top_k(serving.load_serving_model(serving_dir), queries)


def test_training_logs_an_mlflow_model_with_a_signature_and_an_input_example(logged):
    result, folder, tracking_uri, _ = logged
    from mlflow.models import Model

    model_dir = layout.mlflow_model_path(str(folder / "model"))
    info = Model.load(os.path.join(model_dir, "MLmodel"))
    columns = serving.signature_columns(result.serving_dir)
    assert info.signature.inputs.input_names() == list(columns)
    assert info.signature.outputs.input_names() == [
        contract.OUTPUT_PRODUCT_IDS,
        contract.OUTPUT_SCORES,
    ]
    assert info.signature.params.to_dict()[0]["name"] == contract.PARAM_SERVE_K
    example = info.load_input_example(model_dir)
    assert list(example.columns) == list(columns) and len(example) == 2
    names = {a.path for a in MlflowClient(tracking_uri).list_artifacts(result.run_id, "model")}
    assert f"{contract.MLFLOW_MODEL_ARTIFACT}/MLmodel" in names
    # Where an upload to Vertex points: the SavedModel under a fixed name.
    assert os.path.isfile(os.path.join(model_dir, "artifacts", "saved_model", "saved_model.pb"))


def test_a_fresh_process_loads_it_and_answers_as_the_saved_model(logged, tmp_path):
    result, _, tracking_uri, queries = logged
    queries.to_parquet(tmp_path / "queries.parquet")
    code = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('runs:/{result.run_id}/{contract.MLFLOW_MODEL_ARTIFACT}')\n"
        "out = m.predict(pd.read_parquet('queries.parquet'))\n"
        "json.dump({'ids': out['product_ids'].tolist(), 'scores': out['scores'].tolist(),\n"
        "           'trainer_from': sys.modules['trainer'].__file__}, open('out.json', 'w'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_fresh_env(tracking_uri),
        check=True,
        timeout=300,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    assert "site-packages" in out["trainer_from"] or os.path.isabs(out["trainer_from"])
    ids, scores = _saved_model_answers(result.serving_dir, queries)
    assert np.array(out["ids"]).tolist() == ids.tolist()
    np.testing.assert_allclose(np.array(out["scores"]), scores, rtol=1e-6)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _wait_ping(base: str, server: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    raise AssertionError(f"mlflow models serve never answered:\n{log_path.read_text()[-3000:]}")


def test_mlflow_models_serve_answers_rest_requests(logged, tmp_path):
    result, _, tracking_uri, queries = logged
    port = free_port()
    log_path = tmp_path / "serve.log"
    command = [
        os.path.join(os.path.dirname(sys.executable), "mlflow"),
        "models",
        "serve",
        "-m",
        f"runs:/{result.run_id}/{contract.MLFLOW_MODEL_ARTIFACT}",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, cwd=tmp_path, env=_fresh_env(tracking_uri), stdout=log, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ping(base, server, log_path)
        split = json.loads(queries.to_json(orient="split", index=False))
        answer = _post(
            f"{base}/invocations",
            {"dataframe_split": split, "params": {contract.PARAM_SERVE_K: 5}},
        )
        ids, scores = _saved_model_answers(result.serving_dir, queries)
        predictions = answer["predictions"]
        assert [p[contract.OUTPUT_PRODUCT_IDS] for p in predictions] == ids[:, :5].tolist()
        np.testing.assert_allclose(
            [p[contract.OUTPUT_SCORES] for p in predictions], scores[:, :5], rtol=1e-6
        )
        # The records form too, with every product (k defaults to the SavedModel's top-k).
        records = json.loads(queries.head(1).to_json(orient="records"))
        one = _post(f"{base}/invocations", {"dataframe_records": records})["predictions"]
        assert one[0][contract.OUTPUT_PRODUCT_IDS] == ids[0].tolist()
        # A request missing a signature column is refused, naming it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(f"{base}/invocations", {"dataframe_records": [{"nothing": 1}]})
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=60)


def _wait_health(url: str, server: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the predictor exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    raise AssertionError(f"the predictor never answered:\n{log_path.read_text()[-3000:]}")


def test_the_vertex_predictor_answers_vertex_shaped_requests(logged, tmp_path):
    result, _, tracking_uri, queries = logged
    port = free_port()
    env = _fresh_env(tracking_uri)
    # What Vertex sets in a custom container (the routes are the upload's, any path works).
    env.update(
        AIP_HTTP_PORT=str(port),
        AIP_PREDICT_ROUTE="/v1/endpoints/e/deployedModels/m:predict",
        AIP_HEALTH_ROUTE="/v1/endpoints/e/deployedModels/m",
        AIP_STORAGE_URI=result.serving_dir,
    )
    log_path = tmp_path / "predictor.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "trainer.serving.predictor"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_health(base + env["AIP_HEALTH_ROUTE"], server, log_path)
        instances = json.loads(queries.to_json(orient="records"))
        url = base + env["AIP_PREDICT_ROUTE"]
        answer = _post(url, {"instances": instances, "parameters": {"k": 7}})
        ids, scores = _saved_model_answers(result.serving_dir, queries)
        assert [p["product_ids"] for p in answer["predictions"]] == ids[:, :7].tolist()
        np.testing.assert_allclose(
            [p["scores"] for p in answer["predictions"]], scores[:, :7], rtol=1e-6
        )
        for bad, says in (
            ({"instances": [{"no_such_column": 1}]}, "instances[0] lacks ['buyer_id']"),
            ({"rows": []}, "instances"),
            ({"instances": instances[:1], "parameters": {"k": 0}}, "parameters.k"),
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _post(url, bad)
            assert refused.value.code == 400
            assert says in json.loads(refused.value.read())["error"]
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_gate_evaluates_a_champion_of_another_protocol_on_the_challengers_split(
    logged, tiny_prepared, tmp_path
):
    result, folder, tracking_uri, _ = logged
    config, root = tiny_prepared
    evaluate.run_evaluation(
        str(folder / "model"), str(root / "examples"), str(tmp_path / "ev"), tracking_uri
    )
    client = tracking.open_client(tracking_uri)
    old = registry.register_run(client, "tiny", result.run_id, pipeline_job="old-job")
    client.set_model_version_tag("tiny", old.version, contract.TAG_VERSION_PROTOCOL_KEY, "old")
    registry.promote(client, "tiny", old.version, cfg.Registry())
    new = registry.register_run(client, "tiny", result.run_id, pipeline_job="new-job")
    assert (old.version, new.version) == ("1", "2")
    # Without the split: INCONCLUSIVE, naming what is missing.
    missing = registry.gate_version(client, "tiny", new.version, cfg.Registry())
    assert missing.decision == contract.GATE_INCONCLUSIVE and "--examples" in missing.reason
    # With it, the champion's SavedModel is scored on the challenger's test buyers: the same
    # model, so the lift is exactly zero on every buyer.
    same = registry.gate_version(
        client, "tiny", new.version, cfg.Registry(), str(root / "examples")
    )
    assert same.decision == contract.GATE_INCONCLUSIVE, same.reason
    assert same.lift.value == 0 and same.lift.low == 0 and same.lift.high == 0
    assert same.buyers > 0
    champion = registry.version_by_alias(client, "tiny", contract.ALIAS_CHAMPION)
    assert champion.version == "1"
