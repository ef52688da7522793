"""Artifacts larger than Cloud Run's 32 MiB request limit reach MLflow (mlflow_server/).

Cloud Run refuses any HTTP/1 request whose body exceeds 32 MiB ("Maximum HTTP/1 request
size 32 MiB", cloud.google.com/run/quotas). ``CappedProxy`` plays that front end on
127.0.0.1: it forwards every request to the server that ``mlflow_server/entrypoint.sh``
starts (SQLite store, local artifact root) and answers 413 to a body over 32 MiB, whether
it announces a Content-Length or comes chunked (counted while it streams). The product's
``RunTracker`` logs a 100 MiB artifact with the proxy's URL as its tracking URI:

- proxied mode (``MLFLOW_SERVE_ARTIFACTS=true``, the entrypoint's own default): the upload
  is refused with 413 and ends in the tracker's backlog, so the limit is really enforced;
  after the switch to direct mode (the server rewrites the run's ``mlflow-artifacts:/``
  location to the root) ``python -m trainer replay`` sends it and the bytes come back whole;
- direct mode (``MLFLOW_SERVE_ARTIFACTS=false``, what mlflow_server/cloudbuild.yaml
  deploys): the client writes the root itself, no artifact byte crosses the proxy, the
  run is FINISHED with no backlog and no ``tracking_degraded`` tag, and the file read back
  through the tracking URI has the same SHA-256.

The local root stands in for ``gs://``: what GCS itself does is not exercised here.
Figures (sizes, wall times, hashes, bytes through the proxy) are printed; run with ``-s``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import REPO_ROOT, MlflowServer, free_port
from trainer import contract
from trainer.tracking import RunTracker

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CLOUD_RUN_MAX_REQUEST_BYTES = 32 * MiB
ARTIFACT_BYTES = 100 * MiB
# Bounds on everything the proxy and the tests wait for.
SOCKET_TIMEOUT_S = 60
REQUEST_DEADLINE_S = 120
DRAIN_CAP_BYTES = 256 * MiB  # a refused body is read (and dropped) up to this, then cut off
MAX_CHUNKS = 1_000_000
PIECE = MiB
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",  # set again from what is actually forwarded
    }
)


class RequestTooLarge(Exception):
    """The body passed the limit; ``size`` is how much of it was counted."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class CappedProxy:
    """A threaded HTTP/1.1 reverse proxy on 127.0.0.1 that refuses bodies over ``limit``.

    ``stats`` records every request: method, path, body bytes, status; ``refused`` the
    ones answered 413 and how their size was known.
    """

    def __init__(self, upstream_port: int, limit: int = CLOUD_RUN_MAX_REQUEST_BYTES):
        self.upstream_port = upstream_port
        self.limit = limit
        self._lock = threading.Lock()
        self.requests: list[dict] = []
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, **entry) -> None:
        with self._lock:
            self.requests.append(entry)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def summary(self) -> dict:
        with self._lock:
            entries = list(self.requests)
        forwarded = [e for e in entries if e["status"] != 413]
        return {
            "requests": len(entries),
            "refused_413": [
                {"method": e["method"], "bytes": e["body_bytes"], "framing": e["framing"]}
                for e in entries
                if e["status"] == 413
            ],
            "largest_forwarded_body": max((e["body_bytes"] for e in forwarded), default=0),
            "request_bytes_forwarded": sum(e["body_bytes"] for e in forwarded),
            "response_bytes": sum(e["response_bytes"] for e in entries),
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S  # on the accepted socket: no read waits forever
    owner: CappedProxy

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    def do_GET(self):
        self._relay()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- reading the body ------------------------------------------------------------------

    def _read_exact(self, size: int, deadline: float, keep: bool) -> bytes:
        """``size`` bytes of the body (dropped unless ``keep``), in pieces, within the deadline."""
        parts, left = [], size
        while left > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("request body not read in time")
            piece = self.rfile.read(min(PIECE, left))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            left -= len(piece)
            if keep:
                parts.append(piece)
        return b"".join(parts)

    def _read_chunked(self, deadline: float) -> bytes:
        """The de-chunked body; raises RequestTooLarge once the count passes the limit."""
        limit, total, parts = self.owner.limit, 0, []
        for _ in range(MAX_CHUNKS):
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                for _ in range(100):  # trailers, up to the blank line
                    if self.rfile.readline(65537) in (b"\r\n", b"\n", b""):
                        break
                if total > limit:
                    raise RequestTooLarge(total)
                return b"".join(parts)
            total += size
            if total > DRAIN_CAP_BYTES:
                raise RequestTooLarge(total)  # stop reading: the connection is cut
            over = total > limit
            data = self._read_exact(size, deadline, keep=not over)
            if over:
                parts.clear()  # counted, not kept: a refused body is drained to its end
            else:
                parts.append(data)
            self.rfile.readline(3)  # the CRLF after each chunk
        raise RequestTooLarge(total)

    # -- relaying --------------------------------------------------------------------------

    def _refuse(self, size: int, framing: str) -> None:
        text = (
            f"413 Request Entity Too Large: a {size}-byte body exceeds the "
            f"{self.owner.limit}-byte HTTP/1 request limit\n"
        ).encode()
        self.close_connection = True
        self.send_response(413)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(text)
        self.owner.record(
            method=self.command,
            path=self.path,
            body_bytes=size,
            framing=framing,
            status=413,
            response_bytes=len(text),
        )

    def _relay(self) -> None:
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        framing = "chunked" if chunked else "content-length"
        try:
            if chunked:
                body = self._read_chunked(deadline)
            else:
                size = int(self.headers.get("Content-Length") or 0)
                if size > self.owner.limit:
                    if size <= DRAIN_CAP_BYTES:
                        self._read_exact(size, deadline, keep=False)
                    raise RequestTooLarge(size)
                body = self._read_exact(size, deadline, keep=True)
        except RequestTooLarge as too_large:
            self._refuse(too_large.size, framing)
            return
        except (OSError, ValueError, TimeoutError):
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(
            "127.0.0.1", self.owner.upstream_port, timeout=SOCKET_TIMEOUT_S
        )
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            sent = self._send_response(response, deadline)
            status = response.status
        except (OSError, http.client.HTTPException):
            self.close_connection = True
            self.send_error(502, "upstream unavailable")
            sent, status = 0, 502
        finally:
            upstream.close()
        self.owner.record(
            method=self.command,
            path=self.path,
            body_bytes=len(body),
            framing=framing,
            status=status,
            response_bytes=sent,
        )

    def _send_response(self, response: http.client.HTTPResponse, deadline: float) -> int:
        """Streams the upstream response to the client; returns the body bytes sent."""
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304)
        if no_body or length is not None:
            self.send_header("Content-Length", "0" if no_body and length is None else length)
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        if no_body:
            return 0
        for _ in range(MAX_CHUNKS):
            if time.monotonic() > deadline:
                raise TimeoutError("response not relayed in time")
            piece = response.read(PIECE)
            if not piece:
                break
            sent += len(piece)
            if length is None:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                self.wfile.write(piece)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return sent


class Stack:
    """One SQLite store and artifact root; the server (in either mode) behind the proxy."""

    def __init__(self, root: Path):
        self.root = root
        self.artifacts = root / "artifacts"
        self.env = {
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
            "MLFLOW_ARTIFACT_ROOT": str(self.artifacts),
        }
        self.port = free_port()  # every restart reuses it, so the proxy's upstream stays put
        self.proxy = CappedProxy(self.port)
        self.server: MlflowServer | None = None
        self.mode: str | None = None
        self.starts = 0

    def ensure(self, mode: str) -> MlflowServer:
        """The server in ``mode`` ("proxied" or "direct"), restarted on the same store if needed."""
        if self.mode != mode:
            if self.server is not None:
                self.server.stop()
            self.starts += 1
            env = {**self.env, "MLFLOW_SERVE_ARTIFACTS": "true" if mode == "proxied" else "false"}
            began = time.monotonic()
            self.server = MlflowServer(env, self.root / f"server-{self.starts}.log", self.port)
            self.server.wait_healthy()
            self.mode = mode
            print(f"\n[server] {mode} mode healthy after {time.monotonic() - began:.1f} s")
        return self.server

    def close(self) -> None:
        self.proxy.close()
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    s = Stack(tmp_path_factory.mktemp("large-artifacts"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """100 MiB of random bytes (a SavedModel's variables stand-in) and their SHA-256."""
    path = tmp_path_factory.mktemp("big") / "variables.data-00000-of-00001"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(ARTIFACT_BYTES // (4 * MiB)):
            piece = os.urandom(4 * MiB)
            digest.update(piece)
            f.write(piece)
    assert path.stat().st_size == ARTIFACT_BYTES
    return path, digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(8 * MiB), b""):
            digest.update(piece)
    return digest.hexdigest()


def download(tracking_uri: str, run_id: str, artifact_path: str, dst: Path) -> Path:
    import mlflow.artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    )


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_the_proxy_refuses_bodies_over_32_mib_chunked_or_not(stack):
    stack.ensure("proxied")
    base = f"{stack.proxy.url}/api/2.0/mlflow-artifacts/artifacts/proxy-check"
    stack.proxy.reset()

    def pieces(total: int, size: int):
        for start in range(0, total, size):
            yield os.urandom(min(size, total - start))

    small = b"".join(pieces(3 * MiB, MiB))
    # A generator body goes out chunked: the proxy de-chunks it and the server stores it.
    put = requests.put(f"{base}/small.bin", data=iter([small[:MiB], small[MiB:]]), timeout=60)
    assert put.status_code == 200, put.text
    got = requests.get(f"{base}/small.bin", timeout=60)
    assert got.status_code == 200 and got.content == small

    over = CLOUD_RUN_MAX_REQUEST_BYTES + 1
    chunked = requests.put(f"{base}/chunked.bin", data=pieces(over, MiB), timeout=60)
    sized = requests.put(f"{base}/sized.bin", data=os.urandom(over), timeout=60)
    at_limit = requests.put(
        f"{base}/at-limit.bin", data=os.urandom(CLOUD_RUN_MAX_REQUEST_BYTES), timeout=60
    )
    assert (chunked.status_code, sized.status_code, at_limit.status_code) == (413, 413, 200)
    for name in ("chunked.bin", "sized.bin"):  # refused bodies never reached the server
        assert requests.get(f"{base}/{name}", timeout=60).status_code == 404
    summary = stack.proxy.summary()
    print(f"[proxy self-check] {json.dumps(summary)}")
    assert [r["framing"] for r in summary["refused_413"]] == ["chunked", "content-length"]


def test_proxied_mode_refuses_a_100_mib_artifact_then_replay_sends_it_once_direct(
    stack, big_file, tmp_path
):
    """The control: the limit bites in proxied mode; direct mode heals what it left behind."""
    path, digest = big_file
    stack.ensure("proxied")
    stack.proxy.reset()
    model = tmp_path / "model"
    small = tmp_path / "experiment.yaml"
    small.write_text("experiment: large-artifacts\n")
    tracker = RunTracker(
        stack.proxy.url, "large-artifacts-proxied", backlog_dir=str(model), flush_interval_s=0.5
    )
    tracker.start("proxied-100mib", {"artifact_mib": 100}, {"mode": "proxied"}, uuid.uuid4().hex)
    run_id = tracker.run_id
    tracker.log_artifact(str(small))
    began = time.monotonic()
    tracker.log_artifact(str(path), "serving_model/variables")
    wait_for(lambda: stack.proxy.summary()["refused_413"], 60, "the proxy to refuse the upload")
    refused_after = time.monotonic() - began
    tracker.finish()
    summary = stack.proxy.summary()
    print(
        f"[proxied] {ARTIFACT_BYTES} B upload refused after {refused_after:.2f} s; "
        f"{len(summary['refused_413'])} attempt(s) answered 413; proxy {json.dumps(summary)}"
    )
    # Refused, kept in the backlog: the 413 and the artifact operation are both there.
    assert "413" in (tracker.degraded_reason or ""), tracker.degraded_reason
    assert tracker.backlog_written == str(model / contract.BACKLOG_FILE)
    lines = [json.loads(line) for line in Path(tracker.backlog_written).read_text().splitlines()]
    assert any(op["op"] == "artifact" and op["path"] == str(path) for op in lines)
    assert summary["largest_forwarded_body"] <= CLOUD_RUN_MAX_REQUEST_BYTES
    assert all(r["bytes"] == ARTIFACT_BYTES for r in summary["refused_413"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.proxy.url)
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:/")
    assert [f.path for f in client.list_artifacts(run_id)] == ["experiment.yaml"]

    # Switch to direct mode: entrypoint.sh rewrites the run's mlflow-artifacts:/ location to the
    # root (same objects), so what was logged through the proxy is still there and the
    # backlog replays straight to the root.
    stack.ensure("direct")
    server_log = stack.server.log()
    assert "rewrote mlflow-artifacts:/" in server_log, server_log
    run = client.get_run(run_id)
    assert run.info.artifact_uri == f"{stack.artifacts}/{run.info.experiment_id}/{run_id}/artifacts"
    assert [f.path for f in client.list_artifacts(run_id)] == ["experiment.yaml"]
    # The UI's own endpoint serves it too: a direct server reads the root for the browser.
    shown = requests.get(
        f"{stack.proxy.url}/get-artifact",
        params={"path": "experiment.yaml", "run_uuid": run_id},
        timeout=60,
    )
    assert shown.status_code == 200 and shown.text == small.read_text()
    began = time.monotonic()
    replay = subprocess.run(
        [sys.executable, "-m", "trainer", "replay", str(model)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    replay_s = time.monotonic() - began
    assert replay.returncode == 0, replay.stdout + replay.stderr
    # Its JSON summary comes last; mlflow prints "View run ..." lines before it.
    replayed = json.loads(replay.stdout[replay.stdout.index("{\n") :])
    back = download(
        stack.proxy.url, run_id, f"serving_model/variables/{path.name}", tmp_path / "back"
    )
    print(
        f"[proxied->direct] replay sent the backlog in {replay_s:.2f} s "
        f"({json.dumps(replayed)}); sha256 "
        f"{sha256_of(back)[:16]}... == {digest[:16]}...: {sha256_of(back) == digest}"
    )
    assert back.stat().st_size == ARTIFACT_BYTES and sha256_of(back) == digest
    run = client.get_run(run_id)
    assert run.info.status == contract.STATUS_FINISHED
    # The tag keeps what the tracker saw at finish (the 413); replay re-tags only for metric
    # points it sent, so it still counts the artifact as missing although MLflow now holds it.
    assert "413" in run.data.tags[contract.TAG_TRACKING_DEGRADED]
    assert replayed["rejected"] == [] and replayed["run_ids"] == [run_id]


def test_direct_mode_a_100_mib_artifact_arrives_whole_through_the_capped_proxy(
    stack, big_file, tmp_path
):
    path, digest = big_file
    stack.ensure("direct")
    stack.proxy.reset()
    model = tmp_path / "model"
    tracker = RunTracker(
        stack.proxy.url, "large-artifacts-direct", backlog_dir=str(model), flush_interval_s=0.5
    )
    tracker.start("direct-100mib", {"artifact_mib": 100}, {"mode": "direct"}, uuid.uuid4().hex)
    run_id = tracker.run_id
    assert run_id is not None
    began = time.monotonic()
    tracker.log_artifact(str(path), "serving_model/variables")
    tracker.finish()
    upload_s = time.monotonic() - began

    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack.proxy.url)
    run = client.get_run(run_id)
    assert tracker.degraded_reason is None and tracker.backlog_written is None
    assert not (model / contract.BACKLOG_FILE).exists()
    assert run.info.status == contract.STATUS_FINISHED
    assert contract.TAG_TRACKING_DEGRADED not in run.data.tags
    assert run.info.artifact_uri.startswith(f"{stack.artifacts}/")

    began = time.monotonic()
    back = download(
        stack.proxy.url, run_id, f"serving_model/variables/{path.name}", tmp_path / "back"
    )
    download_s = time.monotonic() - began
    back_digest = sha256_of(back)
    summary = stack.proxy.summary()

    # The MLflow UI still lists the run's artifacts: the server reads the root itself.
    listed = requests.get(
        f"{stack.proxy.url}/ajax-api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "serving_model/variables"},
        timeout=60,
    )
    assert listed.status_code == 200, listed.text
    files = [(f["path"], f["is_dir"], int(f.get("file_size", -1))) for f in listed.json()["files"]]
    assert files == [(f"serving_model/variables/{path.name}", False, ARTIFACT_BYTES)]
    print(
        f"[direct] {ARTIFACT_BYTES} B ({ARTIFACT_BYTES // MiB} MiB) logged by RunTracker in "
        f"{upload_s:.2f} s ({ARTIFACT_BYTES / MiB / upload_s:.0f} MiB/s), read back in "
        f"{download_s:.2f} s; sha256 {back_digest[:16]}... == {digest[:16]}...: "
        f"{back_digest == digest}; artifact_uri {run.info.artifact_uri}; proxy {json.dumps(summary)}"
    )
    assert back.stat().st_size == ARTIFACT_BYTES and back_digest == digest
    # Tracking calls only: no artifact body crossed the proxy (Cloud Run) either way.
    assert summary["refused_413"] == []
    assert summary["largest_forwarded_body"] < MiB
    assert summary["response_bytes"] < MiB
