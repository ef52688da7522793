"""MLflow plugin: a Google ID token on calls to a private Cloud Run MLflow server.

``mlflow_server/`` deploys the tracking server with ``--no-allow-unauthenticated``: Cloud Run
lets a request through only with ``Authorization: Bearer <Google ID token>`` whose audience is
the service's URL, from an identity holding ``roles/run.invoker``. This module is an MLflow
request-header provider (entry point group ``mlflow.request_header_provider`` in setup.py),
so every MLflow client in a process that has the package installed adds that header, with
no change to the code that calls MLflow.

Which hosts get a token. MLflow asks providers for headers without saying where the request
goes (``RequestHeaderProvider.request_headers()`` takes no URL), and our code talks to MLflow
through ``MlflowClient(tracking_uri=...)``, which does not change the process's tracking URI.
So the provider reads the target from the one caller that builds every REST request,
``mlflow.utils.rest_utils.http_request`` (its ``host_creds.host``; pinned mlflow 3.17, checked
by tests/unit/trainer/test_mlflow_auth.py). A token is added only when that target is an
``https://`` origin that is allowed:

- each origin or pattern in ``MLFLOW_GOOGLE_AUTH_AUDIENCES`` (comma-separated, e.g.
  ``https://mlflow-abc-ez.a.run.app`` or ``https://*.run.app``; the component image sets the
  latter), and
- the origin of ``MLFLOW_TRACKING_URI`` when it is ``https://<name>.run.app``.

When the target cannot be read (another mlflow), nothing is sent and a warning says why.
The token's audience is the target's origin (what Cloud Run checks); tokens are cached per
audience and fetched again five minutes before they expire.

Standard library at module top; google-auth is imported when a token is fetched, and mlflow
not at all (MLflow calls ``in_context`` and ``request_headers`` on any object).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import os
import sys
import threading
import time
from urllib.parse import urlsplit

AUDIENCES_ENV = "MLFLOW_GOOGLE_AUTH_AUDIENCES"
# Fetch a new token when the cached one has less than this left (Google's live one hour).
REFRESH_MARGIN_S = 300.0
_FRAMES_TO_SEARCH = 12
_logger = logging.getLogger(__name__)


def origin(url: str) -> str | None:
    """``https://host[:port]`` of an https URL (lower case, default port dropped), else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname:
        return None
    host = parts.hostname.lower()
    return f"https://{host}" if port in (None, 443) else f"https://{host}:{port}"


def allowed_patterns(environ: dict | None = None) -> list[str]:
    """The origins (or ``https://*.domain`` patterns) that get a token, from the environment."""
    environ = os.environ if environ is None else environ
    patterns = [p.strip().rstrip("/").lower() for p in environ.get(AUDIENCES_ENV, "").split(",")]
    patterns = [p for p in patterns if p]
    tracking = origin(environ.get("MLFLOW_TRACKING_URI", ""))
    if tracking and (urlsplit(tracking).hostname or "").endswith(".run.app"):
        patterns.append(tracking)
    return patterns


def is_allowed(target_origin: str, patterns: list[str]) -> bool:
    """Whether ``target_origin`` (from ``origin``) matches one of ``patterns``."""
    for pattern in patterns:
        if pattern.startswith("https://*."):
            # The wildcard stands for one or more whole labels; the origin holds no path,
            # query or user info (origin() builds it from the parsed host and port).
            if fnmatch.fnmatchcase(target_origin, pattern) and target_origin.count("/") == 2:
                return True
        elif target_origin == pattern:
            return True
    return False


def request_target() -> str | None:
    """The URL host MLflow's REST client is building a request for, or None outside one."""
    frame = sys._getframe(1)
    for _ in range(_FRAMES_TO_SEARCH):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "http_request" and frame.f_globals.get("__name__") == (
            "mlflow.utils.rest_utils"
        ):
            return getattr(frame.f_locals.get("host_creds"), "host", None)
        frame = frame.f_back
    return None


IMPERSONATE_ENV = "MLFLOW_GOOGLE_IMPERSONATE_SERVICE_ACCOUNT"


def fetch_id_token(audience: str, request=None) -> str:
    """A Google ID token for ``audience`` from the environment's credentials.

    On Vertex AI, Cloud Run and GCE: the metadata server (the job's service account). On a
    workstation, any of:

    - ``GOOGLE_APPLICATION_CREDENTIALS`` naming a service account key;
    - ``gcloud auth application-default login --impersonate-service-account=SA``;
    - ``gcloud auth application-default login`` with ``MLFLOW_GOOGLE_IMPERSONATE_SERVICE_ACCOUNT
      =SA`` (you need ``roles/iam.serviceAccountTokenCreator`` on SA).

    google-auth's ``fetch_id_token`` reads an impersonated-credentials file only when
    ``GOOGLE_APPLICATION_CREDENTIALS`` names it, not from gcloud's default location
    (google/oauth2/id_token.py, ``fetch_id_token_credentials``), and user credentials cannot
    mint a token for another audience at all; so both workstation cases go through the IAM
    Credentials API's ``generateIdToken`` for the service account here.

    Args:
        audience: The token's audience (the Cloud Run service's origin).
        request: A ``google.auth.transport.Request``; a requests-based one when None.
    """
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    request = request or google.auth.transport.requests.Request()
    try:
        return google.oauth2.id_token.fetch_id_token(request, audience)
    except google.auth.exceptions.DefaultCredentialsError as err:
        first = err
    try:
        return _impersonated_id_token(audience, request)
    except google.auth.exceptions.DefaultCredentialsError as err:
        raise RuntimeError(
            f"no Google credentials to get an ID token for the MLflow server {audience}: "
            f"{first}; {err}. Use a service account (GOOGLE_APPLICATION_CREDENTIALS, `gcloud "
            "auth application-default login --impersonate-service-account=SA`, or `gcloud auth "
            f"application-default login` with {IMPERSONATE_ENV}=SA), or reach the server "
            "through `gcloud run services proxy` and track to http://localhost:PORT"
        ) from err


IAM_ID_TOKEN_URL = (
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateIdToken"
)


def _impersonated_id_token(audience: str, request) -> str:
    # Application default credentials from gcloud's default location ask the IAM Credentials
    # API for the service account's ID token (they need roles/iam.serviceAccountTokenCreator
    # on it). google-auth's IDTokenCredentials would do the same through a session of its own,
    # ignoring ``request``; one call with ``request`` keeps the transport injectable.
    import google.auth
    import google.auth.exceptions
    from google.auth import impersonated_credentials

    credentials, _ = google.auth.default()
    if isinstance(credentials, impersonated_credentials.Credentials):
        # What `login --impersonate-service-account` wrote: the user's credentials inside.
        source, target = credentials._source_credentials, credentials.service_account_email
    else:
        source, target = credentials, os.environ.get(IMPERSONATE_ENV, "").strip()
        if not target:
            raise google.auth.exceptions.DefaultCredentialsError(
                f"the application default credentials ({type(credentials).__name__}) are not a "
                f"service account's, and {IMPERSONATE_ENV} names none to impersonate"
            )
    if not source.valid:
        source.refresh(request)
    response = request(
        url=IAM_ID_TOKEN_URL.format(target),
        method="POST",
        headers={"Authorization": f"Bearer {source.token}", "Content-Type": "application/json"},
        body=json.dumps({"audience": audience, "includeEmail": True}).encode(),
    )
    if response.status != 200:
        raise RuntimeError(
            f"the IAM Credentials API refused an ID token of {target} for {audience} "
            f"(HTTP {response.status}): {response.data[:300]!r}; the caller needs "
            f"roles/iam.serviceAccountTokenCreator on {target}"
        )
    return json.loads(response.data)["token"]


def token_expiry(token: str) -> float:
    """The ``exp`` claim (epoch seconds) of a JWT; 0 when it cannot be read (not cached)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0


class TokenCache:
    """ID tokens per audience, fetched again ``REFRESH_MARGIN_S`` before they expire."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, audience: str) -> str:
        """A valid token for ``audience`` (one fetch per audience at a time)."""
        with self._lock:
            token, expiry = self._tokens.get(audience, ("", 0.0))
            if token and expiry - self._clock() > REFRESH_MARGIN_S:
                return token
            # Looked up on the module, so a test can fake exactly the fetching function.
            token = sys.modules[__name__].fetch_id_token(audience)
            self._tokens[audience] = (token, token_expiry(token))
            return token


_CACHE = TokenCache()
_warned = threading.Event()


class GoogleIdTokenHeaderProvider:
    """MLflow request-header provider: ``Authorization: Bearer <ID token>`` for allowed hosts."""

    def _audience(self) -> str | None:
        patterns = allowed_patterns()
        if not patterns:
            return None
        target = request_target()
        if target is None:
            if not _warned.is_set():
                _warned.set()
                _logger.warning(
                    "%s is set but the MLflow request's host cannot be read (mlflow changed?): "
                    "no Google ID token is sent",
                    AUDIENCES_ENV,
                )
            return None
        target_origin = origin(target)
        return target_origin if target_origin and is_allowed(target_origin, patterns) else None

    def in_context(self) -> bool:
        """True when the request being built goes to an allowed https origin."""
        return self._audience() is not None

    def request_headers(self) -> dict[str, str]:
        """The Authorization header for the request's origin, or nothing."""
        audience = self._audience()
        if audience is None:
            return {}
        return {"Authorization": f"Bearer {_CACHE.get(audience)}"}
