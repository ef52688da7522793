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


class _FakeGoogle:
    """Google's token endpoints as a google-auth transport (the narrowest seam: no network).

    The metadata server is absent (a workstation); the OAuth token endpoint refreshes user
    credentials; the IAM Credentials API mints the service account's ID token.
    """

    def __init__(self, audience: str):
        self.calls: list[tuple[str, dict, dict]] = []
        claims = {"aud": audience, "exp": 4102444800, "email": "sa@p.iam.gserviceaccount.com"}
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        self.id_token = f"e30.{body}.sig"

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        import google.auth.exceptions
        import google.auth.transport

        if "metadata.google.internal" in url or "169.254.169.254" in url:
            raise google.auth.exceptions.TransportError("no metadata server here")
        payload = body.decode() if isinstance(body, bytes) else (body or "")
        self.calls.append((url, dict(headers or {}), payload))
        if url.startswith("https://oauth2.googleapis.com/token"):
            answer = {"access_token": "user-access", "expires_in": 3600}
        elif url.endswith(":generateIdToken"):
            answer = {"token": self.id_token}
        else:
            raise AssertionError(f"unexpected request to {url}")

        class _Response(google.auth.transport.Response):
            status = 200
            headers = {"content-type": "application/json"}
            data = json.dumps(answer).encode()

        return _Response()


@pytest.mark.parametrize("login", ["impersonated", "user-with-env"])
def test_workstation_credentials_from_gcloud_login_give_an_id_token(login, monkeypatch, tmp_path):
    # `gcloud auth application-default login [--impersonate-service-account=SA]` writes this
    # file to gcloud's config folder; google-auth's fetch_id_token alone does not read it.
    user = {
        "type": "authorized_user",
        "client_id": "c.apps.googleusercontent.com",
        "client_secret": "s",
        "refresh_token": "r",
    }
    sa = "sa@p.iam.gserviceaccount.com"
    adc = (
        {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/"
            f"projects/-/serviceAccounts/{sa}:generateAccessToken",
            "source_credentials": user,
            "delegates": [],
        }
        if login == "impersonated"
        else user
    )
    (tmp_path / "application_default_credentials.json").write_text(json.dumps(adc))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    if login == "user-with-env":
        monkeypatch.setenv(mlflow_auth.IMPERSONATE_ENV, sa)
    else:
        monkeypatch.delenv(mlflow_auth.IMPERSONATE_ENV, raising=False)
    audience = "https://mlflow-server-abc-ez.a.run.app"
    google = _FakeGoogle(audience)

    token = mlflow_auth.fetch_id_token(audience, request=google)

    assert token == google.id_token and mlflow_auth.token_expiry(token) == 4102444800
    (url, headers, payload) = google.calls[-1]
    assert url.endswith(f"/serviceAccounts/{sa}:generateIdToken")
    assert headers["Authorization"] == "Bearer user-access"  # the user asks for the SA's token
    assert json.loads(payload) == {"audience": audience, "includeEmail": True}


def test_user_credentials_without_a_service_account_to_impersonate_say_what_to_do(
    monkeypatch, tmp_path
):
    user = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
    (tmp_path / "application_default_credentials.json").write_text(json.dumps(user))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.delenv(mlflow_auth.IMPERSONATE_ENV, raising=False)
    with pytest.raises(RuntimeError, match=mlflow_auth.IMPERSONATE_ENV):
        mlflow_auth.fetch_id_token("https://a.run.app", request=_FakeGoogle("https://a.run.app"))
