# Two images from one file, both with the package installed at the pinned versions:
#   component (the default, last target): every pipeline step on Vertex AI, as a non-root user,
#     with TensorFlow's CUDA wheels so the same image trains on a GPU machine.
#   dataflow-worker: what Dataflow's workers run for the transform step (--sdk_container_image),
#     CPU-only and as root, started by Beam's boot program.
# components.COMPONENT_IMAGE names the component image's default tag; an environment file's
# `image` or `python -m pipelines compile --image` sets another, and the worker image is the same
# repository with "-dataflow-worker" appended (pipelines/env.py).
#   make image                          # docker build of both targets, tagged with the version
#   gcloud builds submit --config=cloudbuild.yaml .   # build + push (version and git sha tags)
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

# Dataflow starts a custom worker container through Beam's boot program: take it from the
# Beam SDK image of the same Beam and Python versions as the package (constraints.txt).
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam

FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    # MLflow calls to a private Cloud Run server (*.run.app) carry a Google ID token of the
    # job's service account (trainer/tracking/auth.py); no other host gets one.
    MLFLOW_GOOGLE_AUTH_AUDIENCES=https://*.run.app
WORKDIR /opt/b2b-recs
COPY setup.py constraints.txt ./
COPY components components
COPY pipelines pipelines
COPY trainer trainer
COPY reporting reporting

# Dataflow's workers: the trainer's needs only (Beam, tf.Transform, TensorFlow for the
# transform graph), without the CUDA wheels of the gpu extra nobody uses on a Dataflow worker
# (12 wheels, 2.8 GB compressed at the pinned versions) and without kfp and the Vertex clients.
# Root, as in Beam's own SDK images: the boot program sets up its environment under
# /opt/apache/beam and Dataflow mounts root-owned folders under /var/opt/google, so a non-root
# worker fails at start-up. The boot program must be the entrypoint
# (https://cloud.google.com/dataflow/docs/guides/build-container-image, "Requirements").
FROM base AS dataflow-worker
RUN pip install -c constraints.txt '.[trainer]'
COPY --from=beam /opt/apache/beam /opt/apache/beam
USER root
ENTRYPOINT ["/opt/apache/beam/boot"]

# The pipeline steps. The gpu extra is tensorflow[and-cuda]: CUDA, cuDNN, cuBLAS, NCCL as pip
# wheels (pinned in constraints.txt) that TensorFlow loads from site-packages, so this CPU base
# image trains on a GPU machine (the driver comes from the host). A plain install, not
# editable: the MLflow plugin's entry point is registered, and the code runs from site-packages.
FROM base AS component
RUN pip install -c constraints.txt '.[all,gpu]' \
    && useradd --create-home --uid 1000 --user-group app
# Non-root: Vertex runs the KFP executor and the custom job's command as this user. Vertex AI
# gives every task an explicit command (the KFP executor), so no entrypoint is needed.
USER app
WORKDIR /home/app
