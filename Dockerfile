# The one image every pipeline component runs in (components.COMPONENT_IMAGE names its tag).
#   docker build -t europe-docker.pkg.dev/b2b-recs/pipelines/b2b-recs:0.1.0 .
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY setup.py constraints.txt ./
COPY components components
COPY pipelines pipelines
COPY trainer trainer
COPY reporting reporting
RUN pip install -c constraints.txt '.[all]'
