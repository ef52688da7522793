"""The evaluation protocol of a run: what must agree for two runs' metrics to be compared.

Two runs are comparable when they were evaluated on the same interactions, split the same
way, against the same catalog, by the same evaluation protocol. Each part is a short string
(a run tag, ``contract.PROTOCOL_PARTS``) and the key is a hash of all of them
(``contract.TAG_PROTOCOL_KEY``), so a report can group runs by key and say which part differs.

The dataset digest covers the cleaned interactions of every split (the source columns only:
the derived buyer columns depend on the feature config) and does not depend on how they were
split or in which order the rows come: it is the row count and the sum of the rows' hashes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from trainer import config as cfg
from trainer import contract


def dataset_digest(frames: list[pd.DataFrame]) -> str:
    """A digest of the interactions in ``frames`` that ignores row order and split."""
    columns = [c for c in contract.SOURCE_COLUMNS if all(c in f.columns for f in frames)]
    total, rows = np.uint64(0), 0
    for frame in frames:
        hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(np.uint64)
        with np.errstate(over="ignore"):
            total = np.uint64(total + hashed.sum(dtype=np.uint64))
        rows += len(frame)
    text = f"{','.join(columns)}|{rows}|{int(total)}"
    return f"{rows}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def split_description(split: cfg.Split) -> str:
    """The split strategy with what decides it: dates, or fractions and seed."""
    if split.strategy == "strict_time":
        return f"strict_time train<{split.train_end} eval<{split.eval_end}"
    return (
        f"{split.strategy} eval={split.eval_fraction:g} test={split.test_fraction:g} "
        f"seed={split.seed}"
    )


def protocol_key(parts: dict[str, str]) -> str:
    """The key of a protocol: a short hash of its parts."""
    text = "\n".join(f"{name}={parts[name]}" for name in contract.PROTOCOL_PARTS)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def protocol_tags(
    config: cfg.ExperimentConfig, splits: list[pd.DataFrame], catalog: pd.DataFrame
) -> dict[str, str]:
    """The run tags of a run's protocol: each part and the key.

    Args:
        config: The run's resolved config.
        splits: The cleaned train, eval and test frames.
        catalog: The retrieval catalog.
    """
    evaluation = contract.EVALUATION_PROTOCOL_VERSION
    if config.training.exclude_seen:
        evaluation += "+exclude_seen"
    parts = {
        contract.TAG_PROTOCOL_DATASET: dataset_digest(splits),
        contract.TAG_PROTOCOL_SPLIT: split_description(config.dataset.split),
        contract.TAG_PROTOCOL_CATALOG: str(len(catalog)),
        contract.TAG_PROTOCOL_EVALUATION: evaluation,
    }
    return {**parts, contract.TAG_PROTOCOL_KEY: protocol_key(parts)}
