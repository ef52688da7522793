"""The MLflow ID-token plugin: which hosts get a token, caching, and its registration."""

import ast
import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking.request_header.registry import _request_header_provider_registry

from trainer.tracking import auth as mlflow_auth

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def fake_token(audience: str, exp: float) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'aud': audience, 'exp': exp})}.c2ln"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://mlflow-abc-ez.a.run.app", "https://mlflow-abc-ez.a.run.app"),
        ("https://MLflow-ABC.run.app:443/api/2.0/x?y=1", "https://mlflow-abc.run.app"),
        ("https://localhost:8443/", "https://localhost:8443"),
        ("http://mlflow-abc.run.app", None),
        ("sqlite:///x.db", None),
        ("https://", None),
        ("https://host:notaport", None),
    ],
)
def test_origin(url, expected):
    assert mlflow_auth.origin(url) == expected


def test_allowed_hosts_come_from_the_environment_and_a_run_app_tracking_uri():
    env = {
        mlflow_auth.AUDIENCES_ENV: " https://*.run.app/, https://mlflow.example.com ",
        "MLFLOW_TRACKING_URI": "https://mlflow-xyz.a.run.app/",
    }
    assert mlflow_auth.allowed_patterns(env) == [
        "https://*.run.app",
        "https://mlflow.example.com",
        "https://mlflow-xyz.a.run.app",
    ]
    assert mlflow_auth.allowed_patterns({"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}) == []
    assert mlflow_auth.allowed_patterns({"MLFLOW_TRACKING_URI": "http://x.run.app"}) == []
    assert mlflow_auth.allowed_patterns({}) == []


@pytest.mark.parametrize(
    "target, allowed",
    [
        ("https://mlflow-abc-ez.a.run.app", True),
        ("https://mlflow.example.com", True),
        ("https://run.app", False),
        ("https://x.run.app.evil.com", False),
        ("https://evil.com", False),
        ("https://mlflow.example.com:8443", False),
        ("https://sub.mlflow.example.com", False),
    ],
)
def test_is_allowed(target, allowed):
    patterns = ["https://*.run.app", "https://mlflow.example.com"]
    assert mlflow_auth.is_allowed(mlflow_auth.origin(target), patterns) is allowed


def test_token_cache_reuses_a_token_and_refreshes_before_expiry(monkeypatch):
    now = [1_000_000.0]
    fetched = []

    def fetch(audience):
        fetched.append(audience)
        return fake_token(audience, now[0] + 3600)

    monkeypatch.setattr(mlflow_auth, "fetch_id_token", fetch)
    cache = mlflow_auth.TokenCache(clock=lambda: now[0])
    first = cache.get("https://a.run.app")
    assert cache.get("https://a.run.app") == first
    cache.get("https://b.run.app")
    assert fetched == ["https://a.run.app", "https://b.run.app"]
    now[0] += 3600 - mlflow_auth.REFRESH_MARGIN_S + 1  # inside the margin: fetch again
    assert cache.get("https://a.run.app") != first
    assert fetched[-1] == "https://a.run.app" and len(fetched) == 3


def test_unreadable_tokens_are_not_cached(monkeypatch):
    fetched = []
    monkeypatch.setattr(mlflow_auth, "fetch_id_token", lambda a: fetched.append(a) or "opaque")
    cache = mlflow_auth.TokenCache()
    cache.get("https://a.run.app")
    cache.get("https://a.run.app")
    assert len(fetched) == 2
    assert mlflow_auth.token_expiry("a.b") == 0.0


def test_missing_credentials_give_an_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(
        RuntimeError, match=r"(?s)no Google credentials .*gcloud run services proxy"
    ):
        mlflow_auth.fetch_id_token("https://a.run.app")


class _Recorder(BaseHTTPRequestHandler):
    """Answers MLflow's search-experiments call and records each request's headers."""

    seen: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def do_GET(self):  # noqa: N802
        self.seen.append(dict(self.headers))
        body = json.dumps({"experiments": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_provider_reads_the_request_target_from_the_installed_mlflow(recording_server):
    """The one assumption about mlflow's internals, checked against the pinned version."""
    targets = []

    class Probe:
        def in_context(self):
            targets.append(mlflow_auth.request_target())
            return False

        def request_headers(self):
            return {}

    _request_header_provider_registry._registry.append(Probe())
    try:
        MlflowClient(tracking_uri=recording_server).search_experiments()
    finally:
        _request_header_provider_registry._registry.pop()
    assert targets and set(targets) == {recording_server}
    assert mlflow_auth.request_target() is None  # outside a request


def test_no_token_over_plain_http_or_outside_a_request(recording_server, monkeypatch):
    monkeypatch.setenv(mlflow_auth.AUDIENCES_ENV, "https://*.run.app," + recording_server)
    monkeypatch.setattr(mlflow_auth, "fetch_id_token", lambda a: pytest.fail("fetched a token"))
    provider = mlflow_auth.GoogleIdTokenHeaderProvider()
    _request_header_provider_registry._registry.append(provider)
    try:
        MlflowClient(tracking_uri=recording_server).search_experiments()
    finally:
        _request_header_provider_registry._registry.pop()
    assert _Recorder.seen and all("Authorization" not in h for h in _Recorder.seen)
    assert provider.in_context() is False and provider.request_headers() == {}


def test_setup_py_registers_the_provider_for_mlflow():
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    )
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    (spec,) = entry_points["mlflow.request_header_provider"]
    name, target = (s.strip() for s in spec.split("="))
    module, attr = target.split(":")
    assert (module, attr) == ("trainer.tracking.auth", "GoogleIdTokenHeaderProvider")
    assert getattr(mlflow_auth, attr) is mlflow_auth.GoogleIdTokenHeaderProvider
