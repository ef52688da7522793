"""b2b-recs: KFP pipelines that train two-tower retrieval recommenders, tracked in MLflow."""

from setuptools import find_packages, setup

# Versions are pinned in constraints.txt; these are the direct needs of each part.
# google-auth: trainer/tracking/auth.py fetches ID tokens for a private MLflow server.
REPORTING = ["mlflow>=3.5,<4", "google-auth>=2.30", "jinja2>=3.1", "matplotlib>=3.8", "pyyaml>=6"]
PIPELINES = [
    "kfp==2.17.3",
    "google-cloud-pipeline-components>=2.20",
    "google-cloud-aiplatform>=1.100",
]
TRAINER = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-transform==1.21.0",
    "tfx-bsl==1.21.0",
    "tensorflow-recommenders==0.7.7",
    "apache-beam[gcp]==2.77.0",
    "pandas>=2.2",
    "google-cloud-storage>=2.18",
    "google-cloud-bigquery>=3.20",  # bq:// sources (trainer/ingest/bigquery.py)
    "scikit-learn>=1.5",  # the ranking stage's gradient-boosted trees (trainer/rank)
] + REPORTING
# The component image installs this too: CUDA / cuDNN / NCCL wheels that TensorFlow loads on a
# GPU machine (versions pinned in constraints.txt, checked by a resolver dry run in tests).
GPU = ["tensorflow[and-cuda]==2.21.0"]
DEV = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    # `make test` runs the suite in two processes (--dist loadfile: a file's tests together).
    "pytest-xdist>=3.6",
    "ruff>=0.6",
    "psycopg2-binary>=2.9",
    "websocket-client>=1.8",
    # BigQuery ingest's SQL is tested on DuckDB, transpiled from GoogleSQL by sqlglot.
    "duckdb>=1.1",
    "sqlglot>=25",
]

setup(
    name="b2b-recs",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["components*", "pipelines*", "trainer*", "reporting*"]),
    package_data={"reporting": ["templates/*.j2"], "trainer": ["cost/prices.yaml"]},
    # MLflow finds request-header providers through this group: every MLflow client in an
    # environment with the package installed adds a Google ID token for the private Cloud Run
    # server (only for the hosts trainer/tracking/auth.py allows).
    entry_points={
        "mlflow.request_header_provider": [
            "google-id-token=trainer.tracking.auth:GoogleIdTokenHeaderProvider",
        ],
    },
    install_requires=["pyyaml>=6"],
    extras_require={
        "reporting": REPORTING,
        "pipelines": PIPELINES,
        "trainer": TRAINER,
        "all": sorted(set(REPORTING + PIPELINES + TRAINER)),
        "gpu": GPU,
        "dev": DEV,
    },
)
