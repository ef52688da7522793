"""Start-up checks of the MLflow server, run by entrypoint.sh before ``mlflow server``.

    python preflight.py STORE_URI ARTIFACT_ROOT UPGRADE(true|false) MODE(proxied|direct|direct-keep)

1. The database answers (10 s connect timeout): a wrong URI, host or password fails the
   start at once with a message naming the (password-masked) URI, instead of workers that
   start and then fail every request.
2. Schema migrations (``mlflow db upgrade``), on PostgreSQL under an advisory lock: when
   several instances start at once (a Cloud Run scale-out, a deploy), one migrates and the
   others wait for it and then find the schema current; they never run DDL side by side.
3. The artifact root is reachable: a local folder is created and written to; for gs:// the
   bucket is listed (the service account's objectAdmin role allows it). Checked in both
   artifact modes: in direct mode the server still reads the bucket for the UI.
4. Direct mode only (MODE ``direct``): locations recorded while artifacts were proxied
   (``mlflow-artifacts:/1/<run>/artifacts``) are rewritten to the root itself
   (``ROOT/1/<run>/artifacts``), see ``rewrite_proxied_locations``. ``direct-keep`` leaves
   them as they are and only counts them.

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


# Where the tracking store records artifact locations that a proxied server hands out as
# ``mlflow-artifacts:/...`` (mlflow 3.17 schema; tables a store lacks are skipped).
PROXIED_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
PROXIED_SCHEME = "mlflow-artifacts:/"


def direct_root(root: str) -> str:
    """The root as a direct server records it for new experiments (relative paths resolved)."""
    from mlflow.utils.uri import resolve_uri_if_local

    return resolve_uri_if_local(root).rstrip("/")


def rewrite_proxied_locations(engine, root: str, rewrite: bool = True) -> dict[str, int]:
    """Points what was logged through the proxy at the same objects in the root itself.

    A proxied server (``--serve-artifacts --artifacts-destination ROOT``) keeps an artifact
    ``mlflow-artifacts:/1/<run>/artifacts/x`` at ``ROOT/1/<run>/artifacts/x``; a direct server
    (``--default-artifact-root ROOT``) records a new run of experiment 1 as
    ``ROOT/1/<run>/artifacts``: the same object. So switching to direct mode moves nothing;
    only the recorded locations change. Without it the runs of experiments made while
    proxied still point at ``mlflow-artifacts:/``, which a ``--no-serve-artifacts`` server
    refuses (503): their artifacts vanish from the UI and new runs in those experiments
    cannot upload at all. One transaction; idempotent (nothing matches afterwards).

    Returns:
        Rows per ``table.column`` that held a proxied location (rewritten unless ``rewrite``
        is false).
    """
    import sqlalchemy

    new_root = direct_root(root) + "/"
    metadata = sqlalchemy.MetaData()
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            present = set(sqlalchemy.inspect(conn).get_table_names())
            for table_name, column_name in PROXIED_LOCATION_COLUMNS:
                if table_name not in present:
                    continue
                table = sqlalchemy.Table(table_name, metadata, autoload_with=conn)
                if column_name not in table.c:
                    continue
                column = table.c[column_name]
                # mlflow-artifacts:/path only; mlflow-artifacts://host/path names another server.
                proxied = column.like(PROXIED_SCHEME + "%") & ~column.like(PROXIED_SCHEME + "/%")
                if rewrite:
                    tail = sqlalchemy.func.substr(column, len(PROXIED_SCHEME) + 1)
                    result = conn.execute(
                        table.update()
                        .where(proxied)
                        .values({column_name: sqlalchemy.literal(new_root) + tail})
                    )
                    count = result.rowcount
                else:
                    count = conn.execute(
                        sqlalchemy.select(sqlalchemy.func.count()).select_from(table).where(proxied)
                    ).scalar_one()
                if count:
                    counts[f"{table_name}.{column_name}"] = count
    except sqlalchemy.exc.SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        die(
            f"cannot rewrite mlflow-artifacts:/ locations to {new_root}: {reason} (nothing was "
            "changed; MLFLOW_REWRITE_PROXIED_LOCATIONS=false starts without the rewrite)"
        )
    return counts


def main(argv: list[str]) -> None:
    """Checks the store and the root, migrates the schema, then (direct) proxied locations."""
    store_uri, artifact_root, do_upgrade, mode = argv
    engine = connect(store_uri)
    if do_upgrade == "true":
        upgrade(engine, store_uri)
    check_artifact_root(artifact_root)
    if mode in ("direct", "direct-keep"):
        rewrite = mode == "direct"
        counts = rewrite_proxied_locations(engine, artifact_root, rewrite)
        if counts and rewrite:
            print(
                f"entrypoint.sh: direct artifacts: rewrote mlflow-artifacts:/ to "
                f"{direct_root(artifact_root)}/ in {counts}",
                file=sys.stderr,
            )
        elif counts:
            print(
                f"entrypoint.sh: warning: {counts} still point at mlflow-artifacts:/, which "
                "this server (--no-serve-artifacts) refuses; their artifacts are unreachable "
                "until rewritten (MLFLOW_REWRITE_PROXIED_LOCATIONS=true, the default, does it)",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
