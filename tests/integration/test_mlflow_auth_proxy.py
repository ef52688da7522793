"""The ID-token plugin end to end: a real MLflow server behind a proxy that wants a valid token.

The proxy stands in for Cloud Run's front end: HTTPS on 127.0.0.1 (a throwaway certificate
the client trusts through MLFLOW_TRACKING_SERVER_CERT_PATH), every request without a valid
``Authorization: Bearer`` token for its own origin answered 401, the rest forwarded to the
server that ``mlflow_server/entrypoint.sh`` starts. Only the token issuer is fake: the test
replaces ``trainer.tracking.auth.fetch_id_token`` (the function that asks Google) with one that
signs tokens with a key the proxy checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.request_header.registry import _request_header_provider_registry

from trainer.tracking import auth as mlflow_auth

pytestmark = pytest.mark.integration

_KEY = b"test-issuer-key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_token(audience: str, lifetime_s: float = 3600) -> str:
    """What Google's issuer would return, signed with the test key instead."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"aud": audience, "exp": time.time() + lifetime_s}).encode())
    signature = hmac.new(_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def token_is_valid(header: str | None, audience: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    head, body, signature = (header[len("Bearer ") :].split(".") + ["", "", ""])[:3]
    expected = _b64(hmac.new(_KEY, f"{head}.{body}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        return False
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims["aud"] == audience and claims["exp"] > time.time()


def _self_signed_certificate(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "proxy.crt", folder / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class AuthProxy:
    """HTTPS reverse proxy: 401 without a valid token for its origin, else forward upstream."""

    def __init__(self, upstream: str, cert_path: str, key_path: str):
        self.requests: list[tuple[str, str, bool]] = []  # (host header, path, had a token)
        proxy = self
        upstream_netloc = urlsplit(upstream).netloc

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                host = self.headers.get("Host", "")
                auth = self.headers.get("Authorization")
                proxy.requests.append((host, self.path.split("?")[0], auth is not None))
                # Cloud Run checks the token's audience against the URL it was called on.
                if not token_is_valid(auth, f"https://{host}"):
                    return self._reply(401, b"missing or invalid ID token", "text/plain")
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "authorization")
                }
                headers["Host"] = upstream_netloc
                conn = http.client.HTTPConnection(upstream_netloc, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    self._reply(response.status, payload, response.getheader("Content-Type"))
                finally:
                    conn.close()

            def _reply(self, status, payload, content_type):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxied_server(mlflow_server_factory, tmp_path_factory):
    """A real MLflow server (SQLite store, proxied artifacts) behind the token-checking proxy."""
    root = tmp_path_factory.mktemp("auth-proxy")
    server = mlflow_server_factory(
        {
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root}/mlflow.db",
            "MLFLOW_ARTIFACT_ROOT": str(root / "artifacts"),
        }
    )
    cert_path, key_path = _self_signed_certificate(root)
    proxy = AuthProxy(server.url, cert_path, key_path)
    yield proxy, cert_path
    proxy.stop()


@pytest.fixture
def client_env(proxied_server, monkeypatch):
    """The proxy's certificate trusted, no retries on errors, a fake issuer; returns fetches."""
    proxy, cert_path = proxied_server
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", cert_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow_auth, "_CACHE", mlflow_auth.TokenCache())
    fetched: list[str] = []

    def fetch(audience):
        fetched.append(audience)
        return issue_token(audience)

    monkeypatch.setattr(mlflow_auth, "fetch_id_token", fetch)
    proxy.requests.clear()
    return proxy, fetched


@pytest.fixture
def plugin():
    """The provider registered as its entry point would (unless the install already did)."""
    registry = _request_header_provider_registry._registry
    if any(isinstance(p, mlflow_auth.GoogleIdTokenHeaderProvider) for p in registry):
        yield
        return
    registry.append(mlflow_auth.GoogleIdTokenHeaderProvider())
    yield
    registry.pop()


@pytest.fixture
def no_plugin(monkeypatch):
    """The registry without our provider (an install registers it through its entry point)."""
    registry = _request_header_provider_registry._registry
    monkeypatch.setattr(
        _request_header_provider_registry,
        "_registry",
        [p for p in registry if not isinstance(p, mlflow_auth.GoogleIdTokenHeaderProvider)],
    )


def test_the_install_registers_the_plugin_through_its_entry_point():
    from importlib.metadata import entry_points

    names = {e.value for e in entry_points(group="mlflow.request_header_provider")}
    assert "trainer.tracking.auth:GoogleIdTokenHeaderProvider" in names


def _track(uri: str, tmp_path) -> str:
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"auth-{time.monotonic_ns()}")
    run = client.create_run(experiment_id, tags={"via": "proxy"})
    client.log_param(run.info.run_id, "lr", "0.1")
    for step in range(3):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    (tmp_path / "note.txt").write_text("through the proxy")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_client_calls_succeed_through_the_proxy_with_the_plugin(
    client_env, plugin, monkeypatch, tmp_path
):
    proxy, fetched = client_env
    uri = f"https://localhost:{proxy.port}"
    monkeypatch.setenv(mlflow_auth.AUDIENCES_ENV, uri)
    run_id = _track(uri, tmp_path)

    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params == {"lr": "0.1"} and run.info.status == "FINISHED"
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "loss")
    assert [m.value for m in history] == [1.0, 0.5, 1.0 / 3]
    artifacts = [f.path for f in MlflowClient(tracking_uri=uri).list_artifacts(run_id)]
    assert artifacts == ["note.txt"]
    # Every request carried a token, one token served them all (cached), audience = origin.
    assert len(proxy.requests) >= 9 and all(had for _, _, had in proxy.requests)
    assert any("/mlflow-artifacts/" in path for _, path, _ in proxy.requests)
    assert fetched == [uri]


def test_client_calls_fail_through_the_proxy_without_the_plugin(client_env, no_plugin, monkeypatch):
    proxy, fetched = client_env
    uri = f"https://localhost:{proxy.port}"
    monkeypatch.setenv(mlflow_auth.AUDIENCES_ENV, uri)
    with pytest.raises(MlflowException, match="401|missing or invalid ID token"):
        MlflowClient(tracking_uri=uri).create_experiment("no-plugin")
    assert proxy.requests and not any(had for _, _, had in proxy.requests)
    assert fetched == []


def test_a_host_that_is_not_allowed_gets_no_token(client_env, plugin, monkeypatch):
    proxy, fetched = client_env
    # Same server under another origin (127.0.0.1 instead of localhost): not in the list.
    monkeypatch.setenv(
        mlflow_auth.AUDIENCES_ENV, f"https://localhost:{proxy.port},https://*.run.app"
    )
    with pytest.raises(MlflowException, match="401|missing or invalid ID token"):
        MlflowClient(tracking_uri=f"https://127.0.0.1:{proxy.port}").search_experiments()
    assert proxy.requests and not any(had for _, _, had in proxy.requests)
    assert fetched == []
