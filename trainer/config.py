"""Experiment configuration: the YAML schema, its validation, and the resolved config.

An experiment YAML names the experiment, the dataset (source, column mapping, cleaning,
split), a list of feature configs, a list of model configs and the training params. One
MLflow run is one (feature config, model config) pair. Everything is validated before any
step runs; a bad file raises ``ConfigError`` naming the file, the field and what was
expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Any

import yaml

# Canonical column names; the dataset's ``columns`` maps them to the source's names.
BUYER_ID = "buyer_id"
PRODUCT_ID = "product_id"
TIMESTAMP = "timestamp"
QUANTITY = "quantity"
PRICE = "price"
TRANSACTION_ID = "transaction_id"
DESCRIPTION = "description"
COUNTRY = "country"
REQUIRED_COLUMNS = (BUYER_ID, PRODUCT_ID, TIMESTAMP)
OPTIONAL_COLUMNS = (QUANTITY, PRICE, TRANSACTION_ID, DESCRIPTION, COUNTRY)
# Point-in-time buyer columns that ingest derives (trainer/buyer_features.py).
HISTORY = "history"
RECENCY_DAYS = "recency_days"
FREQUENCY = "frequency"
MONETARY = "monetary"
DERIVED_COLUMNS = (HISTORY, RECENCY_DAYS, FREQUENCY, MONETARY)
NUMERIC_COLUMNS = (QUANTITY, PRICE, TIMESTAMP, RECENCY_DAYS, FREQUENCY, MONETARY)
STRING_COLUMNS = (BUYER_ID, PRODUCT_ID, TRANSACTION_ID, DESCRIPTION, COUNTRY)
NUMERIC_TRANSFORMS = ("bucketize", "zscore", "log")

SPLIT_STRATEGIES = ("strict_time", "random", "buyer_holdout")
TRANSFORMS = (
    "vocabulary",
    "hashing",
    "bucketize",
    "zscore",
    "log",
    "text",
    "time",
    "cross",
    "history",
)
OPTIMIZERS = ("adagrad", "adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "exponential")
TOWERS = ("buyer", "product")


class ConfigError(ValueError):
    """A config file or mapping that does not match the schema."""

    def __init__(self, source: str, field: str, problem: str):
        self.source, self.field, self.problem = source, field, problem
        super().__init__(f"{source}: {field}: {problem}")


@dataclasses.dataclass(frozen=True)
class Cleaning:
    """Row filters applied by ingest; each dropped row is counted under its reason."""

    min_quantity: float | None = 0.0  # rows with quantity <= this are dropped
    min_price: float | None = 0.0  # rows with price <= this are dropped
    drop_transaction_prefixes: tuple[str, ...] = ()  # e.g. "C" marks a cancellation


@dataclasses.dataclass(frozen=True)
class Split:
    """How interactions are split into train / eval / test."""

    strategy: str = "strict_time"
    train_end: dt.date | None = None  # strict_time: train is before this date
    eval_end: dt.date | None = None  # strict_time: eval is [train_end, eval_end), test after
    eval_fraction: float = 0.1  # random / buyer_holdout
    test_fraction: float = 0.1
    seed: int = 42


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Where the interactions come from and how to read them."""

    name: str
    source: str
    columns: dict[str, str]
    cleaning: Cleaning
    split: Split
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input feature of a tower and how it is transformed and embedded."""

    name: str  # canonical column name
    transform: str
    embedding_dim: int = 32
    oov_buckets: int = 1
    min_frequency: int = 1
    hash_buckets: int = 1000
    num_buckets: int = 10
    max_length: int = 50  # text: tokens kept; history: products kept
    vocab_size: int = 10000  # text: most frequent tokens kept
    cross_with: str = ""  # cross: the other column


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The features of both towers; one transform graph per feature config."""

    id: str
    name: str
    buyer: tuple[Feature, ...]
    product: tuple[Feature, ...]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and optimisation of the two-tower model."""

    id: str
    name: str
    embedding_dim: int = 64
    tower_layers: tuple[int, ...] = ()
    dropout: float = 0.0
    l2: float = 0.0
    optimizer: str = "adagrad"
    learning_rate: float = 0.1
    lr_schedule: str = "constant"  # cosine / exponential decay over the training steps
    lr_decay_rate: float = 0.5  # exponential: factor per epoch
    temperature: float = 1.0
    logq_correction: bool = False  # subtract log(sampling probability) from in-batch logits
    repurchase_scores: bool = False  # sparse part: learned weight per history rank
    remove_accidental_hits: bool = False  # mask in-batch negatives equal to the positive


@dataclasses.dataclass(frozen=True)
class Training:
    """Training-loop params shared by every run of the experiment."""

    epochs: int = 5
    batch_size: int = 4096
    seed: int = 42
    eval_batch_size: int = 8192
    early_stopping_patience: int = 0  # epochs without better validation recall@100; 0: off


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment file."""

    experiment: str
    dataset: Dataset
    feature_configs: tuple[FeatureConfig, ...]
    model_configs: tuple[ModelConfig, ...]
    training: Training
    source: str = "<config>"

    def feature_config(self, config_id: str = "") -> FeatureConfig:
        """The feature config with this id; the first one when ``config_id`` is empty."""
        return _pick(self.feature_configs, config_id, "feature_configs", self.source)

    def model_config(self, config_id: str = "") -> ModelConfig:
        """The model config with this id; the first one when ``config_id`` is empty."""
        return _pick(self.model_configs, config_id, "model_configs", self.source)

    @property
    def history_length(self) -> int:
        """Products kept in the derived history column: the most any feature config uses."""
        lengths = [
            f.max_length
            for fc in self.feature_configs
            for f in fc.buyer
            if f.transform == "history"
        ]
        return max(lengths, default=0)


def _pick(items, config_id, field, source):
    if not config_id:
        return items[0]
    for item in items:
        if item.id == config_id:
            return item
    known = ", ".join(repr(i.id) for i in items)
    raise ConfigError(source, field, f"no entry with id {config_id!r} (known: {known})")


class _Reader:
    """Typed access to a YAML mapping that reports errors by dotted field path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str):
        raise ConfigError(self.source, field, problem)

    def mapping(self, value: Any, field: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(field, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            self.fail(
                f"{field}.{unknown[0]}" if field else unknown[0],
                f"unknown field (expected one of: {', '.join(sorted(allowed))})",
            )
        return value

    def get(self, data: dict, key: str, field: str, kind, default=..., choices=None, minimum=None):
        path = f"{field}.{key}" if field else key
        if key not in data or data[key] is None:
            if default is ...:
                self.fail(path, "required field is missing")
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is dt.date:
            return self.date(value, path)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"expected {_kind_name(kind)}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(path, f"expected a value >= {minimum}, got {value!r}")
        if kind is str and not value.strip() and default != "":
            self.fail(path, "expected a non-empty string")
        return value

    def date(self, value: Any, path: str) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(path, f"expected a date YYYY-MM-DD, got {value!r}")

    def items(self, data: dict, key: str, field: str) -> list:
        path = f"{field}.{key}" if field else key
        value = data.get(key)
        if not isinstance(value, list) or not value:
            self.fail(path, "expected a non-empty list")
        return value


def _kind_name(kind) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }.get(kind, kind.__name__)


def _cleaning(r: _Reader, data: dict, field: str) -> Cleaning:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Cleaning)})
    prefixes = r.get(data, "drop_transaction_prefixes", field, list, [])
    for i, p in enumerate(prefixes):
        if not isinstance(p, str) or not p:
            r.fail(
                f"{field}.drop_transaction_prefixes[{i}]", f"expected a non-empty string, got {p!r}"
            )
    return Cleaning(
        min_quantity=r.get(data, "min_quantity", field, float, 0.0),
        min_price=r.get(data, "min_price", field, float, 0.0),
        drop_transaction_prefixes=tuple(prefixes),
    )


def _split(r: _Reader, data: dict, field: str) -> Split:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Split)})
    strategy = r.get(data, "strategy", field, str, choices=SPLIT_STRATEGIES)
    split = Split(
        strategy=strategy,
        train_end=r.get(data, "train_end", field, dt.date, None),
        eval_end=r.get(data, "eval_end", field, dt.date, None),
        eval_fraction=r.get(data, "eval_fraction", field, float, 0.1, minimum=0.0),
        test_fraction=r.get(data, "test_fraction", field, float, 0.1, minimum=0.0),
        seed=r.get(data, "seed", field, int, 42),
    )
    if strategy == "strict_time":
        if split.train_end is None:
            r.fail(f"{field}.train_end", "required for strategy strict_time")
        if split.eval_end is None:
            r.fail(f"{field}.eval_end", "required for strategy strict_time")
        if split.eval_end <= split.train_end:
            r.fail(f"{field}.eval_end", f"expected a date after train_end ({split.train_end})")
    elif split.eval_fraction + split.test_fraction >= 1.0:
        r.fail(f"{field}.test_fraction", "eval_fraction + test_fraction must be below 1")
    return split


def _dataset(r: _Reader, data: dict, base_dir: str) -> Dataset:
    field = "dataset"
    data = r.mapping(
        data, field, {"name", "source", "columns", "cleaning", "split", "timestamp_format"}
    )
    source = r.get(data, "source", field, str)
    if "://" not in source and not os.path.isabs(source):
        source = os.path.normpath(os.path.join(base_dir, source))
    columns = r.get(data, "columns", field, dict)
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    r.mapping(columns, f"{field}.columns", known)
    for name in REQUIRED_COLUMNS:
        r.get(columns, name, f"{field}.columns", str)
    return Dataset(
        name=r.get(data, "name", field, str),
        source=source,
        columns={k: r.get(columns, k, f"{field}.columns", str) for k in columns},
        cleaning=_cleaning(r, data.get("cleaning") or {}, f"{field}.cleaning"),
        split=_split(r, r.get(data, "split", field, dict), f"{field}.split"),
        timestamp_format=r.get(data, "timestamp_format", field, str, "%Y-%m-%d %H:%M:%S"),
    )


def _feature(r: _Reader, data: dict, field: str, columns: dict) -> Feature:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Feature)})
    name = r.get(data, "name", field, str)
    known = set(columns) | set(DERIVED_COLUMNS)
    if name not in known:
        r.fail(
            f"{field}.name",
            f"{name!r} is not a column of dataset.columns nor a derived "
            f"buyer column ({', '.join(sorted(known))})",
        )
    transform = r.get(data, "transform", field, str, choices=TRANSFORMS)
    if transform in NUMERIC_TRANSFORMS and name not in NUMERIC_COLUMNS:
        r.fail(
            f"{field}.transform",
            f"{transform} needs a numeric column ({', '.join(NUMERIC_COLUMNS)}), got {name!r}",
        )
    if (transform == "history") != (name == HISTORY):
        r.fail(f"{field}.transform", "the history column takes (only) the history transform")
    if transform == "time" and name != TIMESTAMP:
        r.fail(f"{field}.transform", f"time needs the {TIMESTAMP} column, got {name!r}")
    if transform in ("text", "vocabulary", "hashing", "cross") and name not in STRING_COLUMNS:
        r.fail(
            f"{field}.transform",
            f"{transform} needs a string column ({', '.join(STRING_COLUMNS)}), got {name!r}",
        )
    cross_with = r.get(data, "cross_with", field, str, "")
    if transform == "cross" and cross_with not in set(columns) & set(STRING_COLUMNS):
        r.fail(
            f"{field}.cross_with",
            f"cross needs another string column of dataset.columns, got {cross_with!r}",
        )
    return Feature(
        name=name,
        transform=transform,
        max_length=r.get(data, "max_length", field, int, 50, minimum=1),
        vocab_size=r.get(data, "vocab_size", field, int, 10000, minimum=1),
        cross_with=cross_with,
        embedding_dim=r.get(data, "embedding_dim", field, int, 32, minimum=1),
        oov_buckets=r.get(data, "oov_buckets", field, int, 1, minimum=1),
        min_frequency=r.get(data, "min_frequency", field, int, 1, minimum=1),
        hash_buckets=r.get(data, "hash_buckets", field, int, 1000, minimum=1),
        num_buckets=r.get(data, "num_buckets", field, int, 10, minimum=2),
    )


def _feature_config(r: _Reader, data: dict, field: str, columns: dict) -> FeatureConfig:
    data = r.mapping(data, field, {"id", "name", *TOWERS})
    towers = {}
    for tower in TOWERS:
        towers[tower] = tuple(
            _feature(r, item, f"{field}.{tower}[{i}]", columns)
            for i, item in enumerate(r.items(data, tower, field))
        )
    if any(f.name == HISTORY for f in towers["product"]):
        r.fail(f"{field}.product", "history is a buyer feature; put it in the buyer tower")
    if not any(f.name == PRODUCT_ID and f.transform == "vocabulary" for f in towers["product"]):
        r.fail(f"{field}.product", "needs a product_id feature with transform vocabulary")
    config_id = r.get(data, "id", field, str)
    return FeatureConfig(
        id=config_id,
        name=r.get(data, "name", field, str, config_id),
        buyer=towers["buyer"],
        product=towers["product"],
    )


def _model_config(r: _Reader, data: dict, field: str) -> ModelConfig:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(ModelConfig)})
    layers = r.get(data, "tower_layers", field, list, [])
    for i, width in enumerate(layers):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            r.fail(f"{field}.tower_layers[{i}]", f"expected a positive integer, got {width!r}")
    config_id = r.get(data, "id", field, str)
    dropout = r.get(data, "dropout", field, float, 0.0, minimum=0.0)
    if dropout >= 1.0:
        r.fail(f"{field}.dropout", f"expected a value in [0, 1), got {dropout!r}")
    return ModelConfig(
        id=config_id,
        name=r.get(data, "name", field, str, config_id),
        embedding_dim=r.get(data, "embedding_dim", field, int, 64, minimum=1),
        tower_layers=tuple(layers),
        dropout=dropout,
        l2=r.get(data, "l2", field, float, 0.0, minimum=0.0),
        optimizer=r.get(data, "optimizer", field, str, "adagrad", choices=OPTIMIZERS),
        learning_rate=r.get(data, "learning_rate", field, float, 0.1, minimum=0.0),
        lr_schedule=r.get(data, "lr_schedule", field, str, "constant", choices=LR_SCHEDULES),
        lr_decay_rate=r.get(data, "lr_decay_rate", field, float, 0.5, minimum=1e-6),
        temperature=r.get(data, "temperature", field, float, 1.0, minimum=1e-6),
        logq_correction=r.get(data, "logq_correction", field, bool, False),
        repurchase_scores=r.get(data, "repurchase_scores", field, bool, False),
        remove_accidental_hits=r.get(data, "remove_accidental_hits", field, bool, False),
    )


def _training(r: _Reader, data: dict) -> Training:
    field = "training"
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Training)})
    return Training(
        epochs=r.get(data, "epochs", field, int, 5, minimum=1),
        batch_size=r.get(data, "batch_size", field, int, 4096, minimum=1),
        seed=r.get(data, "seed", field, int, 42),
        eval_batch_size=r.get(data, "eval_batch_size", field, int, 8192, minimum=1),
        early_stopping_patience=r.get(data, "early_stopping_patience", field, int, 0, minimum=0),
    )


def _unique_ids(r: _Reader, items, field: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item.id in seen:
            r.fail(f"{field}[{i}].id", f"duplicate id {item.id!r}")
        seen.add(item.id)


def parse_config(data: Any, source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Validates a parsed YAML mapping and returns the experiment config.

    Args:
        data: The mapping loaded from YAML.
        source: Name of the file (or other origin) used in error messages.
        base_dir: Directory that relative dataset sources are resolved against.

    Raises:
        ConfigError: naming the source, the dotted field and what was expected.
    """
    r = _Reader(source)
    data = r.mapping(
        data, "", {"experiment", "dataset", "feature_configs", "model_configs", "training"}
    )
    dataset = _dataset(r, r.get(data, "dataset", "", dict), base_dir)
    features = tuple(
        _feature_config(r, item, f"feature_configs[{i}]", dataset.columns)
        for i, item in enumerate(r.items(data, "feature_configs", ""))
    )
    models = tuple(
        _model_config(r, item, f"model_configs[{i}]")
        for i, item in enumerate(r.items(data, "model_configs", ""))
    )
    _unique_ids(r, features, "feature_configs")
    _unique_ids(r, models, "model_configs")
    return ExperimentConfig(
        experiment=r.get(data, "experiment", "", str),
        dataset=dataset,
        feature_configs=features,
        model_configs=models,
        training=_training(r, data.get("training") or {}),
        source=source,
    )


def parse_config_text(text: str, source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Parses and validates YAML text (as passed to a pipeline parameter)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(document)"
        raise ConfigError(source, where, f"not valid YAML: {getattr(err, 'problem', err)}") from err
    return parse_config(data, source=source, base_dir=base_dir)


def load_config(path: str) -> ExperimentConfig:
    """Reads and validates an experiment YAML file; relative sources resolve beside it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(path, "(file)", f"cannot read: {err.strerror}") from err
    return parse_config_text(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def to_dict(value: Any) -> Any:
    """The config as plain YAML-able data (dates as ISO strings, tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def dump_config(config: ExperimentConfig) -> str:
    """YAML text that ``parse_config_text`` reads back into an equal config."""
    data = to_dict(config)
    data.pop("source")
    return yaml.safe_dump(data, sort_keys=False)


def run_params(
    config: ExperimentConfig, feature_config_id: str = "", model_config_id: str = ""
) -> dict[str, str]:
    """Flattened params of one run: the resolved config of one (feature, model) pair."""
    fc = config.feature_config(feature_config_id)
    mc = config.model_config(model_config_id)
    resolved = {
        "dataset": to_dict(config.dataset),
        "feature": {"buyer": to_dict(fc.buyer), "product": to_dict(fc.product)},
        "model": to_dict(mc),
        "training": to_dict(config.training),
    }
    flat: dict[str, str] = {}
    _flatten(resolved, "", flat)
    return flat


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for v in value:
            _flatten(v, f"{prefix}.{v.get('name', len(out))}", out)
    else:
        out[prefix] = str(value)
