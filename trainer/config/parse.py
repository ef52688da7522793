"""Experiment configuration: the YAML schema, its validation, and the resolved config.

An experiment YAML names the experiment, the dataset (source, column mapping, cleaning,
split), a list of feature configs, a list of model configs and the training params. One
MLflow run is one (feature config, model config) pair. A config whose fields hold
distributions becomes its trials, as the ``search`` section says (``search.py``). Everything
is validated before any step runs; a bad file raises ``ConfigError`` naming the file, the
field and what was expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from typing import Any

from trainer import contract
from trainer.config import search as config_search
from trainer.config import strict_yaml as config_yaml
from trainer.config.schema import (
    BIGQUERY_PREFIX,
    EPOCH_FORMATS,
    LR_SCHEDULES,
    NATIVE_TIMESTAMP,
    NUMERIC_TRANSFORMS,
    OPTIMIZERS,
    STRING_TRANSFORMS,
    TRANSFORMS,
    BigQuery,
    Cleaning,
    ConfigError,
    Csv,
    Dataset,
    ExperimentConfig,
    Feature,
    FeatureConfig,
    Grid,
    ModelConfig,
    Pair,
    Registry,
    Split,
    Training,
    Transform,
)
from trainer.config.strict_yaml import Reader, line_of

# Over 400 lines: one validator per section of the schema, in file order, so the whole check
# reads top to bottom. The types, defaults and choices are in schema.py, YAML reading and
# typed access in strict_yaml.py.

# Which source columns each transform can take (names and types live in trainer/contract.py).
STRING_COLUMNS = contract.SOURCE_STRING_COLUMNS
NUMERIC_COLUMNS = tuple(
    c
    for c in (*contract.SOURCE_COLUMNS, *contract.DERIVED_COLUMNS)
    if contract.RAW_COLUMN_TYPES[c] != contract.STRING
)

SPLIT_STRATEGIES = ("strict_time", "random", "buyer_holdout")
TOWERS = ("buyer", "product")


def _cleaning(r: Reader, data: dict, field: str) -> Cleaning:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Cleaning)})
    prefixes = r.items(data, "drop_transaction_prefixes", field, required=False)
    for i, p in enumerate(prefixes):
        if not isinstance(p, str) or not p:
            r.fail(
                f"{field}.drop_transaction_prefixes[{i}]", f"expected a non-empty string, got {p!r}"
            )
    return Cleaning(
        min_quantity=r.field(Cleaning, data, "min_quantity", field, float),
        min_price=r.field(Cleaning, data, "min_price", field, float),
        drop_transaction_prefixes=tuple(prefixes),
    )


def _split(r: Reader, data: dict, field: str) -> Split:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Split)})
    strategy = r.get(data, "strategy", field, str, choices=SPLIT_STRATEGIES)
    split = Split(
        strategy=strategy,
        train_end=r.field(Split, data, "train_end", field, dt.date),
        eval_end=r.field(Split, data, "eval_end", field, dt.date),
        eval_fraction=r.field(Split, data, "eval_fraction", field, float, minimum=0.0),
        test_fraction=r.field(Split, data, "test_fraction", field, float, minimum=0.0),
        seed=r.field(Split, data, "seed", field, int),
    )
    if strategy == "strict_time":
        if split.train_end is None:
            r.fail(f"{field}.train_end", "required for strategy strict_time")
        if split.eval_end is None:
            r.fail(f"{field}.eval_end", "required for strategy strict_time")
        if split.eval_end <= split.train_end:
            r.fail(
                f"{field}.eval_end",
                f"expected a date after train_end ({split.train_end})",
                line_of(data, "eval_end"),
            )
    elif split.eval_fraction + split.test_fraction >= 1.0:
        r.fail(f"{field}.test_fraction", "eval_fraction + test_fraction must be below 1")
    return split


def _dataset(r: Reader, data: dict, base_dir: str) -> Dataset:
    field = "dataset"
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Dataset)})
    source = r.get(data, "source", field, str)
    if "://" not in source and not os.path.isabs(source):
        source = os.path.normpath(os.path.join(base_dir, source))
    columns = r.mapping(
        r.get(data, "columns", field, dict), f"{field}.columns", set(contract.SOURCE_COLUMNS)
    )
    for name in contract.REQUIRED_COLUMNS:
        r.get(columns, name, f"{field}.columns", str)
    return Dataset(
        name=r.get(data, "name", field, str),
        source=source,
        columns={k: r.get(columns, k, f"{field}.columns", str) for k in columns},
        cleaning=_cleaning(r, data.get("cleaning") or {}, f"{field}.cleaning"),
        split=_split(r, r.get(data, "split", field, dict), f"{field}.split"),
        timestamp_format=_timestamp_format(r, data, field),
        csv=_csv(r, data.get("csv") or {}, f"{field}.csv"),
        chunk_rows=r.field(Dataset, data, "chunk_rows", field, int, minimum=0),
        bigquery=_bigquery(r, data, source, field),
    )


def _timestamp_format(r: Reader, data: dict, field: str) -> str:
    value = r.field(Dataset, data, "timestamp_format", field, str)
    bigquery = str(data.get("source", "")).startswith(BIGQUERY_PREFIX)
    if value == NATIVE_TIMESTAMP and not bigquery:
        r.fail(
            f"{field}.timestamp_format",
            f"{NATIVE_TIMESTAMP!r} is for a BigQuery TIMESTAMP or DATETIME column; a file's "
            f"timestamps need {' or '.join(EPOCH_FORMATS)} or a strftime format",
            line_of(data, "timestamp_format"),
        )
    if value not in (*EPOCH_FORMATS, NATIVE_TIMESTAMP) and "%" not in value:
        choices = [*EPOCH_FORMATS, *([NATIVE_TIMESTAMP] if bigquery else [])]
        r.fail(
            f"{field}.timestamp_format",
            f"expected {' or '.join(choices)} or a strftime format such as "
            f"'%Y-%m-%d %H:%M:%S', got {value!r}",
            line_of(data, "timestamp_format"),
        )
    return value


# bq://PROJECT or bq://PROJECT.DATASET.TABLE (BigQuery's own naming rules, simplified).
_BQ_SOURCE = re.compile(
    rf"^bq://({contract.GCP_PROJECT_ID})(\.[A-Za-z0-9_]{{1,1024}}\.[A-Za-z0-9_$-]{{1,1024}})?$"
)


def _bigquery(r: Reader, data: dict, source: str, field: str) -> BigQuery:
    """The ``bigquery`` section, and the bq:// source it goes with."""
    section = r.mapping(
        data.get("bigquery") or {},
        f"{field}.bigquery",
        {f.name for f in dataclasses.fields(BigQuery)},
    )
    query = r.field(BigQuery, section, "query", f"{field}.bigquery", str).strip()
    order_column = r.field(BigQuery, section, "order_column", f"{field}.bigquery", str).strip()
    if not source.startswith(BIGQUERY_PREFIX):
        if query or order_column:
            r.fail(
                f"{field}.bigquery",
                f"is for a BigQuery source (source: bq://...), the source is {source!r}",
                line_of(data, "bigquery"),
            )
        return BigQuery()
    match = _BQ_SOURCE.match(source)
    if not match:
        r.fail(
            f"{field}.source",
            f"expected bq://PROJECT.DATASET.TABLE (or bq://PROJECT with bigquery.query), "
            f"got {source!r}",
            line_of(data, "source"),
        )
    table = bool(match.group(2))
    if table == bool(query):
        r.fail(
            f"{field}.bigquery.query" if query else f"{field}.source",
            "a query runs in the project of source: bq://PROJECT, not against a table "
            "(name the table in the query)"
            if query
            else "bq://PROJECT names no table: add bigquery.query (a SELECT) or use "
            "bq://PROJECT.DATASET.TABLE",
            line_of(section if query else data, "query" if query else "source"),
        )
    if query and not re.match(r"^(select|with)\b", query, re.IGNORECASE):
        r.fail(
            f"{field}.bigquery.query", f"expected a SELECT (or WITH ... SELECT), got {query[:40]!r}"
        )
    split = data.get("split") or {}
    strategy = split.get("strategy", "strict_time") if isinstance(split, dict) else ""
    if strategy == "random":
        r.fail(
            f"{field}.split.strategy",
            "a BigQuery source splits by time (strict_time) or by buyer (buyer_holdout): "
            "random draws per row of a file, and a table has no row order",
            line_of(split, "strategy") if isinstance(split, dict) else None,
        )
    return BigQuery(query=query, order_column=order_column)


def _csv(r: Reader, data: dict, field: str) -> Csv:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Csv)})
    # Read as is: a tab or a space is a delimiter, not a blank string.
    delimiter = data.get("delimiter", config_yaml.field_default(Csv, "delimiter"))
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '\r\n"':
        r.fail(
            f"{field}.delimiter",
            f"expected one character other than a quote or line break, got {delimiter!r}",
            line_of(data, "delimiter"),
        )
    header = r.field(Csv, data, "header", field, bool)
    names = r.items(data, "names", field, required=False)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            r.fail(f"{field}.names[{i}]", f"expected a non-empty string, got {name!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        r.fail(f"{field}.names", f"expected unique names, {dup!r} is given twice")
    if names and header:
        r.fail(
            f"{field}.names",
            "names are for a file without a header row: set header: false",
            line_of(data, "names"),
        )
    return Csv(delimiter=delimiter, header=header, names=tuple(names))


def _check_transform(r: Reader, name: str, transform: str, field: str, columns: dict) -> None:
    """The transform fits the column (numeric, string, history, time)."""
    path = f"{field}.transform"
    if transform in NUMERIC_TRANSFORMS and name not in NUMERIC_COLUMNS:
        r.fail(
            path, f"{transform} needs a numeric column ({', '.join(NUMERIC_COLUMNS)}), got {name!r}"
        )
    if (transform == Transform.HISTORY) != (name == contract.HISTORY):
        r.fail(path, "the history column takes (only) the history transform")
    if transform == Transform.TIME and name != contract.TIMESTAMP:
        r.fail(path, f"time needs the {contract.TIMESTAMP} column, got {name!r}")
    if transform in STRING_TRANSFORMS and name not in STRING_COLUMNS:
        r.fail(
            path, f"{transform} needs a string column ({', '.join(STRING_COLUMNS)}), got {name!r}"
        )


def _feature(r: Reader, data: dict, field: str, columns: dict) -> Feature:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Feature)})
    name = r.get(data, "name", field, str)
    known = set(columns) | set(contract.DERIVED_COLUMNS)
    if name not in known:
        r.fail(
            f"{field}.name",
            f"{name!r} is not a column of dataset.columns nor a derived "
            f"buyer column ({', '.join(sorted(known))})",
            line_of(data, "name"),
        )
    transform = r.get(data, "transform", field, str, choices=TRANSFORMS)
    _check_transform(r, name, transform, field, columns)
    cross_with = r.field(Feature, data, "cross_with", field, str)
    if transform == Transform.CROSS and cross_with not in set(columns) & set(STRING_COLUMNS):
        r.fail(
            f"{field}.cross_with",
            f"cross needs another string column of dataset.columns, got {cross_with!r}",
        )
    sizes = {"num_buckets": 2}
    return Feature(
        name=name,
        transform=transform,
        cross_with=cross_with,
        **{
            key: r.field(Feature, data, key, field, int, minimum=sizes.get(key, 1))
            for key in (
                "embedding_dim",
                "oov_buckets",
                "min_frequency",
                "hash_buckets",
                "num_buckets",
                "max_length",
                "vocab_size",
            )
        },
    )


def _feature_config(r: Reader, data: dict, field: str, columns: dict) -> FeatureConfig:
    data = r.mapping(data, field, {"id", "name", *TOWERS})
    towers = {}
    for tower in TOWERS:
        towers[tower] = tuple(
            _feature(r, item, f"{field}.{tower}[{i}]", columns)
            for i, item in enumerate(r.items(data, tower, field))
        )
    if any(f.name == contract.HISTORY for f in towers["product"]):
        r.fail(f"{field}.product", "history is a buyer feature; put it in the buyer tower")
    if not any(
        f.name == contract.PRODUCT_ID and f.transform == Transform.VOCABULARY
        for f in towers["product"]
    ):
        r.fail(f"{field}.product", "needs a product_id feature with transform vocabulary")
    config_id = r.get(data, "id", field, str)
    return FeatureConfig(
        id=config_id,
        name=r.get(data, "name", field, str, config_id),
        buyer=towers["buyer"],
        product=towers["product"],
    )


def _model_config(r: Reader, data: dict, field: str) -> ModelConfig:
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(ModelConfig)})
    layers = r.items(data, "tower_layers", field, required=False)
    for i, width in enumerate(layers):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            r.fail(f"{field}.tower_layers[{i}]", f"expected a positive integer, got {width!r}")
    config_id = r.get(data, "id", field, str)
    dropout = r.field(ModelConfig, data, "dropout", field, float, minimum=0.0)
    if dropout >= 1.0:
        r.fail(f"{field}.dropout", f"expected a value in [0, 1), got {dropout!r}")

    def get(key: str, kind, **checks):
        return r.field(ModelConfig, data, key, field, kind, **checks)

    return ModelConfig(
        id=config_id,
        name=r.get(data, "name", field, str, config_id),
        embedding_dim=get("embedding_dim", int, minimum=1),
        tower_layers=tuple(layers),
        dropout=dropout,
        l2=get("l2", float, minimum=0.0),
        optimizer=get("optimizer", str, choices=OPTIMIZERS),
        learning_rate=get("learning_rate", float, minimum=0.0),
        lr_schedule=get("lr_schedule", str, choices=LR_SCHEDULES),
        lr_decay_rate=get("lr_decay_rate", float, minimum=1e-6),
        temperature=get("temperature", float, minimum=1e-6),
        logq_correction=get("logq_correction", bool),
        repurchase_scores=get("repurchase_scores", bool),
        remove_accidental_hits=get("remove_accidental_hits", bool),
    )


def _training(r: Reader, data: dict) -> Training:
    field = "training"
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Training)})
    seeds = r.ints(data, "seeds", field)
    if len(set(seeds)) != len(seeds):
        r.fail(
            f"{field}.seeds",
            f"expected distinct seeds, got {seeds}",
            line_of(data, "seeds"),
        )

    def get(key: str, minimum: int | None = None) -> int:
        return r.field(Training, data, key, field, int, minimum=minimum)

    exclude_seen = r.field(Training, data, "exclude_seen", field, bool)
    calibrate = r.field(Training, data, "calibrate_repurchase", field, bool)
    if calibrate and exclude_seen:
        r.fail(
            f"{field}.calibrate_repurchase",
            "has no effect with exclude_seen: true (the repurchase part scores the buyer's "
            "earlier items, which are then never recommended); remove one of them",
            line_of(data, "calibrate_repurchase"),
        )
    return Training(
        epochs=get("epochs", 1),
        batch_size=get("batch_size", 1),
        seed=get("seed"),
        seeds=tuple(seeds),
        eval_batch_size=get("eval_batch_size", 1),
        early_stopping_patience=get("early_stopping_patience", 0),
        exclude_seen=exclude_seen,
        refit=r.field(Training, data, "refit", field, bool),
        calibrate_repurchase=calibrate,
        ranking_stage=r.field(Training, data, "ranking_stage", field, bool),
    )


def _pairs(r: Reader, data: dict, key: str, features, models) -> tuple[Pair, ...]:
    """The grid's include / exclude entries, each naming ids that exist.

    ``features`` and ``models``: (the ids to list in an error, every id a pair may name).
    """
    out = []
    for i, item in enumerate(r.items(data, key, "grid", required=False)):
        path = f"grid.{key}[{i}]"
        item = r.mapping(item, path, {"feature_config", "model_config"})
        pair = Pair(
            r.get(item, "feature_config", path, str), r.get(item, "model_config", path, str)
        )
        for name, value, (listed, known) in (
            ("feature_config", pair.feature_config, features),
            ("model_config", pair.model_config, models),
        ):
            if value not in known:
                ids = ", ".join(repr(i) for i in listed)
                r.fail(
                    f"{path}.{name}",
                    f"no {name} with id {value!r} (known: {ids})",
                    line_of(item, name),
                )
        out.append(pair)
    return tuple(out)


def _grid(r: Reader, data: dict, max_runs: int, configs: tuple, spaces: tuple) -> Grid:
    """The ``grid`` section; a pair may name a searched config's id (all its trials)."""
    names = [_grid_names(items, spaces, section) for section, items in configs]
    return Grid(
        include=_pairs(r, data, "include", *names),
        exclude=_pairs(r, data, "exclude", *names),
        max_runs=max_runs,
    )


def _grid_names(items, spaces, section: str) -> tuple[list[str], set[str]]:
    """(the ids a grid pair may name, in config order: trials by their base; all of them)."""
    bases = {t.config_id: s.base_id for s in spaces if s.section == section for t in s.trials}
    listed = list(dict.fromkeys(bases.get(c.id, c.id) for c in items))
    return listed, set(listed) | set(bases)


# What MLflow's Model Registry refuses in a name (mlflow/utils/validation.py,
# ``_validate_model_name``: blank, "/" or ":", a path that is not unique such as ".." parts;
# the SQL stores hold names of up to 256 characters).
_MODEL_NAME_REFUSED = re.compile(r"[/:]")
MAX_MODEL_NAME = 256


def _registry(r: Reader, data: dict, experiment: str) -> Registry:
    field = "registry"
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Registry)})
    name = r.field(Registry, data, "model_name", field, str)
    resolved, line = name or experiment, line_of(data, "model_name")
    origin = "" if name else " (the experiment's name, used when registry.model_name is unset)"
    if (
        not resolved.strip()
        or _MODEL_NAME_REFUSED.search(resolved)
        or resolved.strip(".") == ""
        or len(resolved) > MAX_MODEL_NAME
    ):
        r.fail(
            f"{field}.model_name",
            f"MLflow refuses {resolved!r}{origin} as a registered model name: it must not be "
            f"blank, contain '/' or ':', be only dots, or exceed {MAX_MODEL_NAME} characters",
            line,
        )
    gate_k = r.field(Registry, data, "gate_k", field, int)
    if gate_k not in contract.RECALL_KS:
        r.fail(
            f"{field}.gate_k",
            f"expected one of {', '.join(map(str, contract.RECALL_KS))} (the evaluated k), "
            f"got {gate_k}",
            line_of(data, "gate_k"),
        )
    tolerance = r.field(Registry, data, "slice_tolerance", field, float, minimum=0.0)
    if tolerance > 1:
        r.fail(
            f"{field}.slice_tolerance",
            f"expected an absolute recall drop between 0 and 1, got {tolerance}",
            line_of(data, "slice_tolerance"),
        )
    return Registry(model_name=name, gate_k=gate_k, slice_tolerance=tolerance)


def _check_runs(r: Reader, config: ExperimentConfig) -> None:
    """The sweep's grid is not empty and not larger than ``grid.max_runs``."""
    runs = config.runs()
    seeds = len(config.training.sweep_seeds)
    if not runs:
        r.fail("grid", "selects no run: every pair of grid.include is also in grid.exclude")
    if len(runs) > config.grid.max_runs:
        pairs = len(runs) // seeds
        r.fail(
            "grid.max_runs",
            f"the grid has {len(runs)} runs ({pairs} pairs x {seeds} seeds), more than "
            f"max_runs {config.grid.max_runs}; narrow grid.include / grid.exclude or raise "
            "grid.max_runs",
        )


def parse_config(data: Any, source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Validates a parsed YAML mapping and returns the experiment config.

    Args:
        data: The mapping loaded from YAML.
        source: Name of the file (or other origin) used in error messages.
        base_dir: Directory that relative dataset sources are resolved against.

    Raises:
        ConfigError: naming the source, the dotted field (and line) and what was expected.
    """
    r = Reader(source)
    written = {f.name for f in dataclasses.fields(ExperimentConfig)} - {"source", "spaces"}
    data = r.mapping(data, "", written)
    dataset = _dataset(r, r.get(data, "dataset", "", dict), base_dir)
    training = _training(r, data.get("training") or {})
    grid = r.mapping(data.get("grid") or {}, "grid", {f.name for f in dataclasses.fields(Grid)})
    max_runs = r.field(Grid, grid, "max_runs", "grid", int, minimum=1)
    search = config_search.parse_search(r, data.get("search") or {}, training.epochs, max_runs)
    features, feature_spaces = config_search.expand(
        r,
        "feature_configs",
        r.items(data, "feature_configs", ""),
        search,
        lambda item, field: _feature_config(r, item, field, dataset.columns),
        max_runs,
    )
    models, model_spaces = config_search.expand(
        r,
        "model_configs",
        r.items(data, "model_configs", ""),
        search,
        lambda item, field: _model_config(r, item, field),
        max_runs,
    )
    spaces = feature_spaces + model_spaces
    sections = (("feature_configs", features), ("model_configs", models))
    config = ExperimentConfig(
        experiment=r.get(data, "experiment", "", str),
        dataset=dataset,
        feature_configs=features,
        model_configs=models,
        training=training,
        grid=_grid(r, grid, max_runs, sections, spaces),
        registry=_registry(r, data.get("registry") or {}, r.get(data, "experiment", "", str)),
        search=search,
        spaces=spaces,
        source=source,
    )
    _check_runs(r, config)
    return config


def parse_config_text(text: str, source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Parses and validates YAML text (as passed to a pipeline parameter)."""
    try:
        data = config_yaml.loads(text)
    except config_yaml.YamlProblem as err:
        field = err.key or (f"line {err.line}" if err.line else "(document)")
        raise ConfigError(source, field, err.problem, err.line) from err
    return parse_config(data, source=source, base_dir=base_dir)


def load_config(path: str) -> ExperimentConfig:
    """Reads and validates an experiment YAML file; relative sources resolve beside it."""
    try:
        with open(path, "rb") as f:
            text = config_yaml.decode(f.read())
    except OSError as err:
        raise ConfigError(path, "(file)", f"cannot read: {err.strerror}") from err
    except config_yaml.YamlProblem as err:
        raise ConfigError(path, "(file)", err.problem, err.line) from err
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
    import yaml

    data = to_dict(config)
    for derived in ("source", "spaces"):
        data.pop(derived)
    for section in ("feature_configs", "model_configs"):
        data[section] = config_search.written_configs(config, section, data[section])
    data["search"] = config_search.written_search(config.search)
    if not data["search"]:
        data.pop("search")
    return yaml.safe_dump(data, sort_keys=False)


# Flattened config keys that the MLflow contract logs under its own name instead.
_CONTRACT_PARAM_KEYS = {
    "training.epochs": contract.PARAM_EPOCHS,
    "training.batch_size": contract.PARAM_BATCH_SIZE,
    "model.learning_rate": contract.PARAM_LEARNING_RATE,
    "model.optimizer": contract.PARAM_OPTIMIZER,
    "model.embedding_dim": contract.PARAM_EMBEDDING_DIM,
    "model.id": contract.PARAM_MODEL_CONFIG_ID,
    "dataset.name": contract.PARAM_DATASET_ID,
}


def run_params(
    config: ExperimentConfig, fc: FeatureConfig, mc: ModelConfig, seed: int | None = None
) -> dict[str, str]:
    """MLflow params of one run, each value under exactly one name.

    The contract params (``epochs``, ``learning_rate``, ``seed``, ...) plus the rest of the
    resolved config of the (feature config, model config) pair, flattened with dotted names
    (``model.temperature``, ``feature.buyer.history.max_length``, ...). A trial of a search
    space carries its drawn values there too, and ``search.*`` params: the strategy (and
    seed), each searched config's id and trial number, and ``search.drawn``, the names of the
    params that were drawn.
    """
    training = {k: v for k, v in to_dict(config.training).items() if k not in ("seed", "seeds")}
    resolved = {
        "dataset": to_dict(config.dataset),
        "feature": {"buyer": to_dict(fc.buyer), "product": to_dict(fc.product)},
        "model": to_dict(mc),
        "training": training,
    }
    flat: dict[str, str] = {}
    _flatten(resolved, "", flat)
    params = {_CONTRACT_PARAM_KEYS.get(k, k): v for k, v in flat.items()}
    params[contract.PARAM_FEATURE_CONFIG_ID] = fc.id
    params[contract.PARAM_SEED] = str(config.resolve_seed(seed))
    searched, drawn = config_search.trial_params(config, fc, mc)
    params.update(searched)
    if drawn:
        params[contract.PARAM_SEARCH_DRAWN] = ",".join(
            _CONTRACT_PARAM_KEYS.get(k, k) for k in drawn
        )
    return params


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for v in value:
            _flatten(v, f"{prefix}.{v.get('name', len(out))}", out)
    else:
        out[prefix] = str(value)
