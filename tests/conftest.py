"""Shared fixtures: a throwaway MLflow store per test, never a mock."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture
def tracking_uri(tmp_path):
    """A fresh embedded MLflow SQLite store."""
    return f"sqlite:///{tmp_path}/mlflow.db"


def read_ingest_outputs(folder) -> dict:
    """Every output of an ingest folder, rows in a canonical order (for comparisons)."""
    import pandas as pd

    from trainer import contract, ingest, layout

    out = {}
    for name in contract.SPLITS:
        frame = pd.read_parquet(layout.split_path(str(folder), name))
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    out["catalog"] = pd.read_parquet(layout.catalog_path(str(folder)))
    out["stats"] = {k: v for k, v in ingest.load_stats(str(folder)).items() if k != "source"}
    return out


def write_tiny_retail_csv(path, buyers: int = 40, products: int = 30, seed: int = 7) -> dict:
    """Writes a small CSV in the Online Retail layout, with a few bad rows of each kind.

    Buyers prefer products near their own index (so there is something to learn) and rebuy
    some of them (repurchase, as in B2B data). Returns the count of each kind of bad row.
    """
    import gzip
    import random

    rng = random.Random(seed)
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    rows = []
    months = [(2011, m) for m in range(1, 13)]
    invoice = 500000
    for b in range(buyers):
        favourites = [(b + d) % products for d in range(6)]
        for year, month in months:
            for _ in range(rng.randint(1, 3)):
                invoice += 1
                day, hour = rng.randint(1, 28), rng.randint(8, 17)
                for p in rng.sample(favourites, 3) + [rng.randrange(products)]:
                    rows.append(
                        f'{invoice},P{p:03d},PRODUCT {p} "DESC",{rng.randint(1, 12)},'
                        f"{year}-{month:02d}-{day:02d} {hour:02d}:00:00,{1 + p % 7}.5,"
                        f"{10000 + b}.0,{'United Kingdom' if b % 3 else 'France'}"
                    )
    bad = {"missing_buyer_id": 3, "quantity_le_0": 2, "cancelled": 1, "bad_timestamp": 1}
    rows += ["600001,P001,X,1,2011-05-01 10:00:00,1.0,,France"] * 3
    rows += [
        "600002,P002,X,0,2011-05-01 10:00:00,1.0,10001.0,France",
        "600003,P002,X,-2,2011-05-01 10:00:00,1.0,10001.0,France",
    ]
    rows += ["C600004,P003,X,2,2011-05-01 10:00:00,1.0,10002.0,France"]
    rows += ["600005,P004,X,2,not a date,1.0,10002.0,France"]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")
    return {"rows": len(rows), "bad": bad}


TINY_CONFIG = """
experiment: tiny-experiment
dataset:
  name: tiny_retail
  source: {source}
  columns:
    buyer_id: CustomerID
    product_id: StockCode
    timestamp: InvoiceDate
    quantity: Quantity
    price: UnitPrice
    transaction_id: InvoiceNo
    description: Description
    country: Country
  cleaning:
    min_quantity: 0
    min_price: 0
    drop_transaction_prefixes: [C]
  split:
    strategy: strict_time
    train_end: 2011-09-01
    eval_end: 2011-11-01
feature_configs:
  - id: ids
    name: IDs only
    buyer:
      - {{name: buyer_id, transform: vocabulary, embedding_dim: 16}}
    product:
      - {{name: product_id, transform: vocabulary, embedding_dim: 16}}
model_configs:
  - id: small
    name: Small <b>"model"</b> é
    embedding_dim: 16
    optimizer: adagrad
    learning_rate: 0.2
training:
  epochs: 2
  batch_size: 256
  seed: 1
"""


@pytest.fixture
def tiny_dataset(tmp_path):
    """A tiny Online Retail-like CSV and an experiment config that reads it."""
    source = tmp_path / "tiny.csv.gz"
    info = write_tiny_retail_csv(source)
    config_path = tmp_path / "experiment.yaml"
    config_path.write_text(TINY_CONFIG.format(source=source), encoding="utf-8")
    return {"source": str(source), "config_path": str(config_path), **info}


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """The tiny dataset ingested and transformed once per session: (config, root folder)."""
    from trainer import config as cfg
    from trainer import ingest, transform

    root = tmp_path_factory.mktemp("tiny-prepared")
    write_tiny_retail_csv(root / "tiny.csv.gz")
    config = cfg.parse_config_text(TINY_CONFIG.format(source=root / "tiny.csv.gz"))
    ingest.run_ingest(config, str(root / "examples"))
    transform.run_transform(config.feature_config(), str(root / "examples"), str(root / "xf"))
    return config, root


def rich_config_text(source) -> str:
    """TINY_CONFIG with every transform in use and every loss option on."""
    text = TINY_CONFIG.format(source=source)
    text = text.replace(
        "      - {name: buyer_id, transform: vocabulary, embedding_dim: 16}\n",
        "      - {name: buyer_id, transform: vocabulary, embedding_dim: 16}\n"
        "      - {name: history, transform: history, max_length: 10}\n"
        "      - {name: monetary, transform: log}\n"
        "      - {name: recency_days, transform: zscore}\n"
        "      - {name: timestamp, transform: time}\n"
        "      - {name: country, transform: cross, cross_with: buyer_id, hash_buckets: 50}\n",
    )
    text = text.replace(
        "      - {name: product_id, transform: vocabulary, embedding_dim: 16}\n",
        "      - {name: product_id, transform: vocabulary, embedding_dim: 16}\n"
        "      - {name: description, transform: text, embedding_dim: 8, max_length: 4}\n"
        "      - {name: price, transform: bucketize, num_buckets: 4}\n",
    )
    return text.replace(
        "    learning_rate: 0.2\n",
        "    learning_rate: 0.2\n    tower_layers: [16]\n    dropout: 0.1\n    l2: 0.0001\n"
        "    lr_schedule: cosine\n    repurchase_scores: true\n    logq_correction: true\n"
        "    remove_accidental_hits: true\n    temperature: 0.5\n",
    )


@pytest.fixture(scope="session")
def rich_prepared(tmp_path_factory):
    """The tiny dataset with the rich config, ingested and transformed once per session."""
    from trainer import config as cfg
    from trainer import ingest, transform

    root = tmp_path_factory.mktemp("rich-prepared")
    write_tiny_retail_csv(root / "tiny.csv.gz")
    config = cfg.parse_config_text(rich_config_text(root / "tiny.csv.gz"))
    ingest.run_ingest(config, str(root / "examples"))
    transform.run_transform(config.feature_config(), str(root / "examples"), str(root / "xf"))
    return config, root
