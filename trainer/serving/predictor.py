"""A prediction server for Vertex AI custom containers: the SavedModel behind Vertex's contract.

``python -m trainer.serving.predictor`` in the component image is the serving container a
promoted model is uploaded with. Vertex's contract for custom containers
(https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements): listen on
``AIP_HTTP_PORT`` (default 8080), answer health checks on ``AIP_HEALTH_ROUTE`` with 200 once
the model is loaded, and prediction requests on ``AIP_PREDICT_ROUTE``: a JSON body
``{"instances": [...], "parameters": {...}}`` in, ``{"predictions": [...]}`` out, one prediction
per instance in order. The model is read from ``AIP_STORAGE_URI`` (Vertex copies the uploaded
``artifact_uri`` there; a gs:// URI is downloaded first) or ``--model DIR``.

An instance is one buyer's raw features: every column of the serving signature (a missing
one is a 400 naming it; other keys are ignored, as ``mlflow models serve`` ignores them); a
prediction is
``{"product_ids": [...], "scores": [...]}``, top ``parameters.k`` (default all the SavedModel
returns). Standard library HTTP (one request at a time per process, as Vertex scales by
replicas); a bad request is a 400 with ``{"error": "..."}`` naming the problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd

from trainer import contract
from trainer.serving.export import load_serving_model, serve_top_k

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    """A request the predictor cannot answer; the message goes back in the 400."""


class Predictor:
    """The loaded SavedModel and the translation between Vertex's JSON and its signature."""

    def __init__(self, model_dir: str):
        self.serve = load_serving_model(model_dir)
        self.columns = sorted(self.serve.structured_input_signature[1])

    def predict(self, body: dict) -> dict:
        """``{"instances": [...], "parameters": {"k": K}}`` -> ``{"predictions": [...]}``."""
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
            raise BadRequest('expected {"instances": [{<column>: <value>, ...}, ...]}')
        k = (body.get("parameters") or {}).get(contract.PARAM_SERVE_K, contract.SERVING_K)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise BadRequest(f"parameters.k: expected a whole number >= 1, got {k!r}")
        for n, instance in enumerate(instances):
            missing = [c for c in self.columns if c not in instance]
            if missing:
                raise BadRequest(f"instances[{n}] lacks {missing}; the model takes {self.columns}")
        if not instances:
            return {"predictions": []}
        frame = pd.DataFrame(instances)[self.columns]
        try:
            ids, scores = serve_top_k(self.serve, frame)
        except (TypeError, ValueError) as err:
            raise BadRequest(f"instances do not fit the model's columns: {err}") from err
        return {
            "predictions": [
                {
                    contract.OUTPUT_PRODUCT_IDS: list(map(str, i[:k])),
                    contract.OUTPUT_SCORES: [float(s) if np.isfinite(s) else None for s in v[:k]],
                }
                for i, v in zip(ids, scores, strict=True)
            ]
        }


def _handler(predictor: Predictor, predict_route: str, health_route: str):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if self.path.split("?")[0] == health_route:
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != predict_route:
                self._send(404, {"error": f"no route {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                self._send(200, predictor.predict(body))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                self._send(400, {"error": f"the body is not JSON: {err}"})
            except BadRequest as err:
                self._send(400, {"error": str(err)})

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.info("%s %s", self.address_string(), format % args)

    return Handler


def local_model_dir(uri: str) -> str:
    """A local folder holding the SavedModel of ``uri`` (a gs:// URI is downloaded first)."""
    if not uri.startswith("gs://"):
        return uri
    from google.cloud import storage

    bucket_name, _, prefix = uri[len("gs://") :].partition("/")
    target = tempfile.mkdtemp(prefix="model-")
    for blob in storage.Client().list_blobs(bucket_name, prefix=prefix.rstrip("/") + "/"):
        rel = blob.name[len(prefix.rstrip("/")) + 1 :]
        if rel and not rel.endswith("/"):
            path = os.path.join(target, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            blob.download_to_filename(path)
    return target


def main(argv: list[str] | None = None) -> None:
    """Serves the model until killed (Vertex's AIP_* variables, or the flags)."""
    parser = argparse.ArgumentParser(prog="python -m trainer.serving.predictor")
    parser.add_argument("--model", default=os.environ.get(contract.AIP_STORAGE_URI, ""))
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(contract.AIP_HTTP_PORT, contract.DEFAULT_PREDICTOR_PORT)),
    )
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error(f"no model: set {contract.AIP_STORAGE_URI} or pass --model DIR")
    logging.basicConfig(level=logging.INFO)
    predictor = Predictor(local_model_dir(args.model))
    predict_route = os.environ.get(contract.AIP_PREDICT_ROUTE, contract.DEFAULT_PREDICT_ROUTE)
    health_route = os.environ.get(contract.AIP_HEALTH_ROUTE, contract.DEFAULT_HEALTH_ROUTE)
    server = HTTPServer((args.host, args.port), _handler(predictor, predict_route, health_route))
    log.info("serving %s on :%d (%s, %s)", args.model, args.port, predict_route, health_route)
    server.serve_forever()


if __name__ == "__main__":
    main()
