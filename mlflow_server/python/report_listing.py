"""The tracking server as deployed: MLflow's own app plus one read-only route for the report.

``mlflow server --app-name b2b-report`` (what ``entrypoint.sh`` runs) builds its app here. It is
MLflow's Flask app, every route unchanged, with :data:`reporting.listing.LISTING_ENDPOINT`
added: every active run of an experiment read with four column queries
(:func:`reporting.listing.list_page`) instead of ``search_runs``'s ~300,000 ORM objects for
1,000 runs of this product (``bench/RESULTS.md``: the report's 10 s budget over HTTP). The
report asks for it first and falls back to ``runs/search`` on any server without it (a plain
``mlflow server``, an MLflow 2.x one).

How MLflow finds this app: ``--app-name`` accepts the names of the ``mlflow.app`` entry points
(``mlflow/cli/__init__.py``, ``mlflow/server/__init__.py:_find_app``), the mechanism of
MLflow's own ``basic-auth`` app (``mlflow/server/auth/__init__.py:create_app``, whose shape this
follows: a FastAPI app around the Flask one under uvicorn, the Flask app under gunicorn). The
entry point is declared by ``b2b_report_server-1.0.dist-info`` next to this file: a folder on
``sys.path`` holding a ``*.dist-info`` is a distribution to ``importlib.metadata``
(https://docs.python.org/3/library/importlib.metadata.html#distributions), so the image needs
no package install for it.

The route answers only what ``runs/search`` would answer the same caller (the server's own
store; Cloud Run's IAM check and MLflow's host and CORS checks apply to it as to every route).
"""

from __future__ import annotations

import gzip
import json
import logging

log = logging.getLogger(__name__)

APP_NAME = "b2b-report"
# Answers smaller than this go out as they are; larger ones gzip (level 1: ~7 MB in ~50 ms)
# when the client accepts it (requests does, and decodes transparently).
GZIP_MIN_BYTES = 64 * 1024


def _error(status: int, code: str, message: str):
    from flask import Response

    body = json.dumps({"error_code": code, "message": message})
    return Response(body, status=status, mimetype="application/json")


def list_runs_view():
    """POST LISTING_ENDPOINT: one page of runs in ``reporting.listing``'s format."""
    from flask import Response, request
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from reporting import listing

    try:
        fields = listing.parse_request(request.get_json(silent=True))
    except listing.ListingRequestError as exc:
        return _error(400, "INVALID_PARAMETER_VALUE", str(exc))
    store = _get_tracking_store()
    if not isinstance(store, SqlAlchemyStore):
        # A file store: the report falls back to runs/search.
        return _error(501, "NOT_IMPLEMENTED", f"{type(store).__name__} has no column listing")
    offset = fields.pop("offset")
    experiment_id = fields.pop("experiment_id")
    page = listing.list_page(store, experiment_id, offset=offset, **fields)
    body = json.dumps(page, separators=(",", ":")).encode()
    headers = {}
    if len(body) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(body, mimetype="application/json", headers=headers)


def create_app():
    """MLflow's server app with the listing route (the ``mlflow.app`` entry point's factory)."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app
    from mlflow.server.handlers import _add_static_prefix

    from reporting.listing import LISTING_ENDPOINT

    for path in (LISTING_ENDPOINT, LISTING_ENDPOINT.replace("/api/", "/ajax-api/", 1)):
        app.add_url_rule(
            _add_static_prefix(path), "b2b_report_" + path.split("/")[1], list_runs_view,
            methods=["POST"],
        )  # fmt: skip
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
