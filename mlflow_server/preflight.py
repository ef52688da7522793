"""Start-up checks of the MLflow server, run by entrypoint.sh before ``mlflow server``.

    python preflight.py STORE_URI ARTIFACT_ROOT UPGRADE(true|false)

1. The database answers (10 s connect timeout): a wrong URI, host or password fails the
   start at once with a message naming the (password-masked) URI, instead of workers that
   start and then fail every request.
2. Schema migrations (``mlflow db upgrade``), on PostgreSQL under an advisory lock: when
   several instances start at once (a Cloud Run scale-out, a deploy), one migrates and the
   others wait for it and then find the schema current; they never run DDL side by side.
3. The artifact root is reachable: a local folder is created and written to; for gs:// the
   bucket is listed (the service account's objectAdmin role allows it).

Exit status 64 with ``entrypoint.sh: error: ...`` on stderr when a check fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

# pg_advisory_lock key: "mlflow" in ASCII, so other users of advisory locks can tell it apart.
MIGRATION_LOCK_KEY = 0x6D6C666C6F77
CONNECT_TIMEOUT_S = 10


def die(message: str) -> None:
    """Exits with the entrypoint's error message."""
    print(f"entrypoint.sh: error: {message}", file=sys.stderr)
    sys.exit(64)


def redact(uri: str) -> str:
    """The URI with its password masked."""
    return re.sub(r"^([a-zA-Z0-9+.-]+://[^:/@]*):[^@]*@", r"\1:***@", uri)


def connect(store_uri: str):
    """An engine whose database answered ``SELECT 1``; dies naming the URI otherwise."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    postgres = store_uri.startswith("postgresql")
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if postgres else {}
    try:
        engine = sqlalchemy.create_engine(store_uri, connect_args=connect_args, poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        die(f"cannot connect to the tracking database {redact(store_uri)}: {reason}")
    return engine


def upgrade(engine, store_uri: str) -> None:
    """``mlflow db upgrade``; on PostgreSQL only one instance at a time (advisory lock)."""
    import sqlalchemy

    command = [sys.executable, "-m", "mlflow", "db", "upgrade", store_uri]
    print(f"entrypoint.sh: mlflow db upgrade {redact(store_uri)}", file=sys.stderr)
    if engine.dialect.name != "postgresql":
        result = subprocess.run(command, check=False)
    else:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            try:
                result = subprocess.run(command, check=False)
            finally:
                conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY}
                )
    if result.returncode != 0:
        die(f"mlflow db upgrade failed ({result.returncode}) on {redact(store_uri)}")


def check_artifact_root(root: str) -> None:
    """Dies naming the artifact root when it cannot be written (local) or listed (gs://)."""
    parsed = urlparse(root)
    if parsed.scheme == "gs":
        try:
            from google.cloud import storage

            bucket = storage.Client().bucket(parsed.netloc)
            next(iter(bucket.list_blobs(prefix=parsed.path.lstrip("/"), max_results=1)), None)
        except Exception as err:  # noqa: BLE001 - any failure (auth, 404, 403, network) is fatal here
            die(f"artifact root {root} is not reachable: {type(err).__name__}: {err}")
        return
    if parsed.scheme not in ("", "file"):
        return  # s3://, ... : mlflow's own client reports problems on first use
    path = parsed.path if parsed.scheme == "file" else root
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight-"):
            pass
    except OSError as err:
        die(f"artifact root {root} is not writable: {err}")


def main(argv: list[str]) -> None:
    """Checks the store and artifact root, then migrates the schema under a lock."""
    store_uri, artifact_root, do_upgrade = argv
    engine = connect(store_uri)
    if do_upgrade == "true":
        upgrade(engine, store_uri)
    if artifact_root != "-":  # "-": artifacts not proxied, clients write them directly
        check_artifact_root(artifact_root)


if __name__ == "__main__":
    main(sys.argv[1:])
