# The one image every pipeline component runs in, and Dataflow's workers too
# (--sdk_container_image). components.COMPONENT_IMAGE names its default tag; an environment
# file's `image` or `python -m pipelines compile --image` sets another.
#   make image                          # docker build, tagged with the package version
#   gcloud builds submit --config=cloudbuild.yaml .   # build + push (version and git sha tags)
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

# Dataflow starts a custom worker container through Beam's boot program: take it from the
# Beam SDK image of the same Beam and Python versions as the package (constraints.txt).
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam

FROM python:${PYTHON_VERSION}-slim
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
# The gpu extra is tensorflow[and-cuda]: CUDA, cuDNN, cuBLAS, NCCL as pip wheels (pinned in
# constraints.txt) that TensorFlow loads from site-packages, so this CPU base image trains on
# a GPU machine (the driver comes from the host). A plain install, not editable: the MLflow
# plugin's entry point is registered, and the code runs from site-packages.
RUN pip install -c constraints.txt '.[all,gpu]' \
    && useradd --create-home --uid 1000 --user-group app

COPY --from=beam /opt/apache/beam /opt/apache/beam

# Non-root: Vertex runs the KFP executor and the custom job's command as this user.
USER app
WORKDIR /home/app
# Vertex AI gives every task an explicit command (the KFP executor), so this entrypoint is
# only what Dataflow's workers run.
ENTRYPOINT ["/opt/apache/beam/boot"]
