#!/usr/bin/env bash
# Start the MLflow tracking server: the same script runs in the Cloud Run image,
# in `make mlflow-local`, and in tests/integration/test_mlflow_server.py.
#
# Required:
#   MLFLOW_BACKEND_STORE_URI  SQLAlchemy URI of the tracking store, e.g.
#                             postgresql://user:pass@/mlflow?host=/cloudsql/PROJECT:REGION:INSTANCE
#                             (postgresql:// is run with the psycopg2 driver)
#   MLFLOW_ARTIFACT_ROOT      Where artifacts live: gs://bucket/path in production, a local
#                             directory for local use.
# Optional:
#   HOST (0.0.0.0), PORT (8080; Cloud Run sets it), MLFLOW_WORKERS (uvicorn workers, 2)
#   MLFLOW_SERVE_ARTIFACTS (true here; the Cloud Run deploy sets false): true proxies artifacts
#       through the server (--serve-artifacts --artifacts-destination ROOT; clients need only
#       the server URL and its token, but behind Cloud Run no request body may pass 32 MiB);
#       false hands clients ROOT itself (--no-serve-artifacts --default-artifact-root ROOT;
#       clients write and read gs:// with their own credentials and bucket roles, any size).
#   MLFLOW_REWRITE_PROXIED_LOCATIONS (true; direct mode only): rewrite the mlflow-artifacts:/
#       locations recorded while proxied to ROOT/... (the same objects; preflight.py), so
#       older experiments and their runs keep working; false only counts them.
#   MLFLOW_DB_UPGRADE (true): run `mlflow db upgrade` first (preflight.py, under a PostgreSQL
#       advisory lock); false when migrations run as a separate step.
#   MLFLOW_SERVER_ALLOWED_HOSTS: Host headers to accept, comma-separated (mlflow's own
#       variable). On Cloud Run (K_SERVICE set) "$K_SERVICE-*.run.app" is always added; unset
#       elsewhere, mlflow's default (localhost and private IPs) applies.
#   MLFLOW_SERVER_CORS_ALLOWED_ORIGINS: browser origins allowed to POST (mlflow's own variable).
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION (false here; mlflow's own default is true): mlflow's
#       background job runner, used only by GenAI features (scorers, prompt optimisation).
#   MLFLOW_GC_THRESHOLD (50000,20,20): the server processes' garbage-collector thresholds, set
#       by python/sitecustomize.py (next to this script), or "default" for CPython's own.
#   MLFLOW_TCP_NODELAY (true): python/sitecustomize.py turns Nagle off on the connections the
#       uvicorn workers accept (with --workers > 1 they otherwise add ~40 ms per reused
#       connection's request; uvicorn issue #3149).
#   MLFLOW_REPORT_LISTING (true): run MLflow's app with one read-only route added for the
#       report, every run of an experiment in column queries (python/report_listing.py,
#       `--app-name b2b-report`); false runs MLflow's own app (the report then pages through
#       runs/search, ~3x slower at 1,000 runs of this product's metrics).
set -euo pipefail

die() {
  echo "entrypoint.sh: error: $*" >&2
  exit 64
}

# Print a URI with the password masked: the DB URI comes from Secret Manager.
redact() {
  sed -E 's#^([a-zA-Z0-9+.-]+://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"
}

is_true() {
  case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    0 | false | no | off) return 1 ;;
    *) die "expected true or false, got '$1'" ;;
  esac
}

[[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]] ||
  die "MLFLOW_BACKEND_STORE_URI is not set; set it to the tracking database URI, e.g. postgresql://user:password@host:5432/mlflow"
[[ -n "${MLFLOW_ARTIFACT_ROOT:-}" ]] ||
  die "MLFLOW_ARTIFACT_ROOT is not set; set it to the artifact location, e.g. gs://bucket/mlflow-artifacts"

HOST="${HOST:-0.0.0.0}"
PORT="${PORT:-8080}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'"
[[ "$MLFLOW_WORKERS" =~ ^[1-9][0-9]*$ ]] || die "MLFLOW_WORKERS must be a positive number, got '$MLFLOW_WORKERS'"

command -v mlflow >/dev/null || die "mlflow is not on PATH"

store_uri="$MLFLOW_BACKEND_STORE_URI"
# SQLAlchemy 2.1 maps a bare postgresql:// to the psycopg (3) driver; this image ships
# psycopg2, so name it. Other drivers (postgresql+psycopg://, ...) pass through untouched.
if [[ "$store_uri" =~ ^postgres(ql)?:// ]]; then
  store_uri="postgresql+psycopg2://${store_uri#*://}"
fi
case "$store_uri" in
  postgresql* | mysql* | mssql* | sqlite:*) ;;
  *) die "MLFLOW_BACKEND_STORE_URI must be a database URI (postgresql://, mysql://, mssql://, sqlite:///), got '$(redact "$store_uri")'" ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f "$here/preflight.py" ]] || die "$here/preflight.py is missing"
upgrade=false
is_true "${MLFLOW_DB_UPGRADE:-true}" && upgrade=true
artifact_mode=proxied
if ! is_true "${MLFLOW_SERVE_ARTIFACTS:-true}"; then
  artifact_mode=direct
  is_true "${MLFLOW_REWRITE_PROXIED_LOCATIONS:-true}" || artifact_mode=direct-keep
fi
# Fails fast (exit 64, a message naming the URI) on a database that does not answer or an
# artifact root the server cannot write; then `mlflow db upgrade` (creates the schema on an
# empty database, migrates an older one, no-op otherwise) before any worker starts, under a
# PostgreSQL advisory lock so instances starting together never migrate side by side; in
# direct mode it then points locations recorded while proxied at ROOT itself.
python_bin="$(dirname "$(command -v mlflow)")/python"
[[ -x "$python_bin" ]] || python_bin=python3
"$python_bin" "$here/preflight.py" "$store_uri" "$MLFLOW_ARTIFACT_ROOT" "$upgrade" "$artifact_mode"

args=(--backend-store-uri "$store_uri" --host "$HOST" --port "$PORT" --workers "$MLFLOW_WORKERS")
if [[ "$artifact_mode" == proxied ]]; then
  args+=(--serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACT_ROOT")
else
  args+=(--no-serve-artifacts --default-artifact-root "$MLFLOW_ARTIFACT_ROOT")
fi

# mlflow 3.x rejects requests whose Host header is not localhost or a private IP. Cloud Run
# forwards the public *.run.app host; its front end routes only its own host names to this
# service (and checks the caller's ID token first), so accepting them opens nothing.
if [[ -n "${K_SERVICE:-}" ]]; then
  MLFLOW_SERVER_ALLOWED_HOSTS="${K_SERVICE}-*.run.app${MLFLOW_SERVER_ALLOWED_HOSTS:+,$MLFLOW_SERVER_ALLOWED_HOSTS}"
fi
if [[ -n "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS")
fi
if [[ -n "${MLFLOW_SERVER_CORS_ALLOWED_ORIGINS:-}" ]]; then
  args+=(--cors-allowed-origins "$MLFLOW_SERVER_CORS_ALLOWED_ORIGINS")
fi

# The report's listing route imports reporting/listing.py: the image copies it next to this
# script ($here/reporting); in a checkout it is the package's own ($here/../reporting).
listing_root=""
if is_true "${MLFLOW_REPORT_LISTING:-true}"; then
  for root in "$here" "$here/.."; do
    if [[ -f "$root/reporting/listing.py" ]]; then
      listing_root="$(cd "$root" && pwd)"
      break
    fi
  done
  [[ -n "$listing_root" ]] || die "reporting/listing.py is missing (next to $here or above it); set MLFLOW_REPORT_LISTING=false to run MLflow's own app"
  args+=(--app-name b2b-report)
fi

# The job runner starts a pool of huey consumers per instance and schedules periodic tasks on
# every instance; nothing here uses it, and on Cloud Run its CPU is throttled between requests.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# Every Python process of the server imports python/sitecustomize.py (GC, TCP_NODELAY).
[[ -f "$here/python/sitecustomize.py" ]] || die "$here/python/sitecustomize.py is missing"
# python/ also holds report_listing.py and the dist-info that names it an mlflow.app.
export PYTHONPATH="$here/python${listing_root:+:$listing_root}${PYTHONPATH:+:$PYTHONPATH}"

echo "entrypoint.sh: mlflow server${listing_root:+ (app b2b-report)} on $HOST:$PORT, store $(redact "$store_uri"), artifacts $MLFLOW_ARTIFACT_ROOT (${artifact_mode%-keep})" >&2
exec mlflow server "${args[@]}"
