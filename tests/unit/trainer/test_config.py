"""Config validation: good files load, bad ones name the file, the field and the expectation."""

import dataclasses
import datetime as dt

import pytest
import yaml

from trainer import config as cfg
from trainer import contract
from trainer.config.schema import RunSpec

EXAMPLE = "configs/online_retail.yaml"


def _example() -> dict:
    with open(EXAMPLE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_example_config_loads_with_the_design_split():
    config = cfg.load_config(EXAMPLE)
    assert config.experiment == "online-retail-two-tower"
    assert config.dataset.split.train_end == dt.date(2011, 10, 1)
    assert config.dataset.split.eval_end == dt.date(2011, 11, 1)
    assert config.dataset.source.endswith("data/online_retail/online_retail.csv.gz")
    assert config.dataset.cleaning.drop_transaction_prefixes == ("C",)
    assert config.feature_config().buyer[0].name == contract.HISTORY
    assert config.feature_config("ids").buyer[0].name == contract.BUYER_ID
    assert config.model_config("adagrad64").optimizer == "adagrad"
    assert config.model_config().repurchase_scores and config.history_length == 50
    assert config.training.ranking_stage and config.training.refit


def test_dump_then_parse_gives_the_same_config():
    config = cfg.load_config(EXAMPLE)
    again = cfg.parse_config_text(cfg.dump_config(config), source=config.source)
    assert again == config


def _error(data: dict) -> cfg.ConfigError:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse_config(data, source="bad.yaml")
    return info.value


@pytest.mark.parametrize(
    "mutate, field, expected",
    [
        (lambda d: d.pop("experiment"), "experiment", "required"),
        (
            lambda d: d["dataset"]["split"].update(train_end="2011-13-01"),
            "dataset.split.train_end",
            "YYYY-MM-DD",
        ),
        (
            lambda d: d["dataset"]["split"].update(eval_end="2011-09-01"),
            "dataset.split.eval_end",
            "after train_end",
        ),
        (
            lambda d: d["dataset"]["split"].update(strategy="by_moon"),
            "dataset.split.strategy",
            "strict_time",
        ),
        (lambda d: d["dataset"]["columns"].pop("buyer_id"), "dataset.columns.buyer_id", "required"),
        (
            lambda d: d["model_configs"][0].update(learning_rate="fast"),
            "model_configs[0].learning_rate",
            "a number",
        ),
        (
            lambda d: d["model_configs"][0].update(tower_layers=[64, -1]),
            "model_configs[0].tower_layers[1]",
            "positive integer",
        ),
        (
            lambda d: d["model_configs"][0].update(optimizer="lbfgs"),
            "model_configs[0].optimizer",
            "adagrad",
        ),
        (lambda d: d["training"].update(epochs=0), "training.epochs", ">= 1"),
        (lambda d: d["training"].update(epocs=3), "training.epocs", "unknown field"),
        (
            lambda d: d["feature_configs"][0]["buyer"][0].update(transform="magic"),
            "feature_configs[0].buyer[0].transform",
            "vocabulary",
        ),
        (
            lambda d: d["feature_configs"][0]["buyer"].append(
                {"name": "country", "transform": "zscore"}
            ),
            "feature_configs[0].buyer[5].transform",
            "numeric column",
        ),
        (
            lambda d: d["feature_configs"][0]["product"][0].update(name="colour"),
            "feature_configs[0].product[0].name",
            "not a column",
        ),
        (
            lambda d: d["feature_configs"].append(dict(d["feature_configs"][0])),
            "feature_configs[2].id",
            "duplicate",
        ),
    ],
)
def test_bad_config_names_the_field_and_the_expectation(mutate, field, expected):
    data = _example()
    mutate(data)
    err = _error(data)
    assert err.source == "bad.yaml"
    assert err.field == field
    assert expected in err.problem
    assert str(err).startswith(f"bad.yaml: {field}: ")


def test_invalid_yaml_names_the_line():
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse_config_text("experiment: x\ndataset: [unclosed\n", source="broken.yaml")
    assert info.value.source == "broken.yaml"
    assert info.value.field.startswith("line ")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(cfg.ConfigError, match="cannot read"):
        cfg.load_config(str(tmp_path / "nope.yaml"))


def test_unknown_config_id_lists_the_known_ones():
    config = cfg.load_config(EXAMPLE)
    with pytest.raises(cfg.ConfigError, match="known: 'history', 'ids'"):
        config.feature_config("nope")


def test_run_params_flatten_the_resolved_config_under_one_name_each():
    config = cfg.load_config(EXAMPLE)
    params = cfg.run_params(config, config.feature_config("ids"), config.model_config("adagrad64"))
    assert params["model.temperature"] == "1.0"
    assert params["dataset.split.train_end"] == "2011-10-01"
    assert params["feature.buyer.buyer_id.transform"] == "vocabulary"
    # Contract params carry the value once, under the contract's name.
    assert params[contract.PARAM_LEARNING_RATE] == "0.1"
    assert params[contract.PARAM_BATCH_SIZE] == "4096"
    assert params[contract.PARAM_EPOCHS] == str(config.training.epochs)
    assert params[contract.PARAM_EMBEDDING_DIM] == "64"
    assert params[contract.PARAM_MODEL_CONFIG_ID] == "adagrad64"
    assert params[contract.PARAM_FEATURE_CONFIG_ID] == "ids"
    assert params[contract.PARAM_DATASET_ID] == "online_retail"
    assert params[contract.PARAM_SEED] == str(config.training.seed)
    for duplicate in (
        "model.learning_rate",
        "training.batch_size",
        "training.epochs",
        "training.seed",
        "model.embedding_dim",
        "model.id",
        "dataset.name",
    ):
        assert duplicate not in params
    values = list(params.values())
    assert (
        cfg.run_params(
            config, config.feature_config("ids"), config.model_config("adagrad64"), seed=7
        )[contract.PARAM_SEED]
        == "7"
    )
    assert len(values) == len(params)


def _load_text(tmp_path, text: str, name: str = "x.yaml", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return cfg.load_config(str(path))


def _example_text() -> str:
    with open(EXAMPLE, encoding="utf-8") as f:
        return f.read()


def test_an_impossible_unquoted_date_names_file_line_and_field(tmp_path):
    text = _example_text().replace("train_end: 2011-10-01", "train_end: 2011-13-01")
    line = text.splitlines().index(next(t for t in text.splitlines() if "2011-13-01" in t)) + 1
    with pytest.raises(cfg.ConfigError) as info:
        _load_text(tmp_path, text)
    err = info.value
    assert err.field == "dataset.split.train_end"
    assert err.line == line
    assert str(err).startswith(f"{tmp_path / 'x.yaml'}:{line}: dataset.split.train_end: ")
    assert "expected a date YYYY-MM-DD, got '2011-13-01'" in str(err)


def test_a_file_that_is_not_utf8_names_the_file(tmp_path):
    text = _example_text().replace("name: online_retail", "name: caf\u00e9")
    with pytest.raises(cfg.ConfigError) as info:
        _load_text(tmp_path, text, encoding="latin-1")
    assert info.value.source == str(tmp_path / "x.yaml")
    assert "not UTF-8" in info.value.problem and "0xe9" in info.value.problem
    assert info.value.line == next(i for i, t in enumerate(text.splitlines(), 1) if "caf" in t)


def test_a_duplicate_key_is_an_error_not_the_last_value(tmp_path):
    text = _example_text().replace("  epochs: 5\n", "  epochs: 3\n  epochs: 300\n")
    with pytest.raises(cfg.ConfigError) as info:
        _load_text(tmp_path, text)
    assert info.value.field == "epochs"
    assert "duplicate key 'epochs'" in info.value.problem
    assert info.value.line == text.splitlines().index("  epochs: 300") + 1


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path, value):
    text = _example_text().replace("learning_rate: 0.01 ", f"learning_rate: {value} ")
    with pytest.raises(cfg.ConfigError) as info:
        _load_text(tmp_path, text)
    assert info.value.field == "model_configs[0].learning_rate"
    assert "finite" in info.value.problem
    assert info.value.line is not None


def test_runs_are_the_grid_of_pairs_and_seeds():
    data = _example()
    data["training"]["seeds"] = [1, 2, 3]
    config = cfg.parse_config(data)
    runs = config.runs()
    assert len(runs) == 2 * 2 * 3
    assert runs[0] == RunSpec("history", "logq", 1)
    assert len({r.key for r in runs}) == len(runs)
    data["grid"] = {
        "include": [
            {"feature_config": "ids", "model_config": "adagrad64"},
            {"feature_config": "history", "model_config": "logq"},
        ],
        "exclude": [{"feature_config": "history", "model_config": "logq"}],
    }
    assert [(r.feature_config_id, r.model_config_id) for r in cfg.parse_config(data).runs()] == [
        ("ids", "adagrad64")
    ] * 3


def test_one_seed_stays_the_default():
    config = cfg.load_config(EXAMPLE)
    assert {r.seed for r in config.runs()} == {config.training.seed}


@pytest.mark.parametrize(
    "grid, field, expected",
    [
        (
            {"include": [{"feature_config": "nope", "model_config": "logq"}]},
            "grid.include[0].feature_config",
            "known: 'history', 'ids'",
        ),
        (
            {"exclude": [{"feature_config": "ids", "model_config": "lbfgs"}]},
            "grid.exclude[0].model_config",
            "known: 'logq', 'adagrad64'",
        ),
        (
            {
                "include": [{"feature_config": "ids", "model_config": "logq"}],
                "exclude": [{"feature_config": "ids", "model_config": "logq"}],
            },
            "grid",
            "selects no run",
        ),
        ({"max_runs": 3}, "grid.max_runs", "4 runs (4 pairs x 1 seeds), more than max_runs 3"),
        ({"include": [{"feature_config": "ids"}]}, "grid.include[0].model_config", "required"),
        ({"max_runz": 3}, "grid.max_runz", "unknown field"),
    ],
)
def test_a_bad_grid_is_refused_before_anything_runs(grid, field, expected):
    data = _example()
    data["grid"] = grid
    err = _error(data)
    assert err.field == field
    assert expected in err.problem


def test_seeds_must_be_distinct_integers():
    data = _example()
    data["training"]["seeds"] = [1, 1]
    assert _error(data).field == "training.seeds"
    data["training"]["seeds"] = [1, "two"]
    assert _error(data).field == "training.seeds[1]"


def test_exclude_seen_and_refit_default_off_and_are_read_as_booleans():
    data = _example()
    data["training"].pop("refit")  # the demo config turns it and the calibration on
    data["training"].pop("calibrate_repurchase")
    config = cfg.parse_config(data, source="ok.yaml")
    assert not config.training.exclude_seen and not config.training.refit
    assert not config.training.calibrate_repurchase
    data["training"].update(exclude_seen=True, refit=True)
    config = cfg.parse_config(data, source="ok.yaml")
    assert config.training.exclude_seen and config.training.refit
    params = cfg.run_params(config, config.feature_config(), config.model_config())
    assert params["training.exclude_seen"] == "True" and params["training.refit"] == "True"
    assert cfg.parse_config_text(cfg.dump_config(config), source=config.source) == config


@pytest.mark.parametrize("key", ["exclude_seen", "refit", "calibrate_repurchase"])
def test_exclude_seen_and_refit_must_be_booleans(key):
    data = _example()
    data["training"][key] = "yes please"
    err = _error(data)
    assert err.field == f"training.{key}" and "true or false" in err.problem


def test_calibrating_the_repurchase_part_with_exclude_seen_is_refused():
    data = _example()
    assert data["training"]["calibrate_repurchase"] is True  # the demo's
    data["training"]["exclude_seen"] = True
    err = _error(data)
    assert err.field == "training.calibrate_repurchase"
    assert "no effect with exclude_seen" in err.problem
    data["training"]["calibrate_repurchase"] = False
    assert cfg.parse_config(data, source="ok.yaml").training.exclude_seen


@pytest.mark.parametrize(
    "dataset_update, field, expected",
    [
        ({"csv": {"delimiter": ";;"}}, "dataset.csv.delimiter", "one character"),
        ({"csv": {"delimiter": "\n"}}, "dataset.csv.delimiter", "line break"),
        ({"csv": {"header": "no"}}, "dataset.csv.header", "true or false"),
        ({"csv": {"names": ["a", "b"]}}, "dataset.csv.names", "set header: false"),
        ({"csv": {"header": False, "names": ["a", "a"]}}, "dataset.csv.names", "'a' is given"),
        ({"csv": {"header": False, "names": ["a", ""]}}, "dataset.csv.names[1]", "non-empty"),
        ({"csv": {"quote": "'"}}, "dataset.csv.quote", "unknown field"),
        ({"timestamp_format": "epoch_us"}, "dataset.timestamp_format", "epoch_s or epoch_ms"),
        ({"chunk_rows": -1}, "dataset.chunk_rows", ">= 0"),
    ],
)
def test_bad_source_layout_options_name_the_field(dataset_update, field, expected):
    data = _example()
    data["dataset"].update(dataset_update)
    err = _error(data)
    assert err.field == field and expected in err.problem


def test_source_layout_options_are_read_and_round_trip():
    data = _example()
    data["dataset"].update(
        csv={"delimiter": "\t", "header": False, "names": ["a", "b"]},
        timestamp_format="epoch_ms",
        chunk_rows=1000,
    )
    config = cfg.parse_config_text(yaml.safe_dump(data), source="ok.yaml")
    assert config.dataset.csv == cfg.Csv(delimiter="\t", header=False, names=("a", "b"))
    assert config.dataset.timestamp_format == "epoch_ms" and config.dataset.chunk_rows == 1000
    assert cfg.parse_config_text(cfg.dump_config(config)).dataset == config.dataset
    assert cfg.load_config(EXAMPLE).dataset.csv == cfg.Csv()  # defaults: comma, header row


def _bigquery(source="bq://my-project.retail.orders", **bigquery) -> dict:
    data = _example()
    data["dataset"]["source"] = source
    if bigquery:
        data["dataset"]["bigquery"] = bigquery
    return data


def test_a_bigquery_table_or_query_is_a_source():
    table = cfg.parse_config_text(yaml.safe_dump(_bigquery()), source="x.yaml")
    assert table.dataset.is_bigquery and table.dataset.source == "bq://my-project.retail.orders"
    assert table.dataset.bigquery == cfg.BigQuery()
    query = "SELECT * FROM `other-project.sales.lines` WHERE region = 'EU'"
    data = _bigquery("bq://my-project", query=query, order_column="line_no")
    data["dataset"]["timestamp_format"] = "native"
    config = cfg.parse_config_text(yaml.safe_dump(data), source="x.yaml")
    assert config.dataset.bigquery == cfg.BigQuery(query=query, order_column="line_no")
    assert config.dataset.timestamp_format == "native"
    assert cfg.parse_config_text(cfg.dump_config(config), source="dump") == dataclasses.replace(
        config, source="dump"
    )


@pytest.mark.parametrize(
    "data, field, expected",
    [
        (_bigquery("bq://my-project.orders"), "dataset.source", "bq://PROJECT.DATASET.TABLE"),
        (_bigquery("bq://My_Project.a.b"), "dataset.source", "bq://PROJECT.DATASET.TABLE"),
        (_bigquery("bq://my-project"), "dataset.source", "add bigquery.query"),
        (
            _bigquery(query="SELECT 1"),
            "dataset.bigquery.query",
            "runs in the project of source: bq://PROJECT",
        ),
        (
            _bigquery("bq://my-project", query="DELETE FROM x WHERE TRUE"),
            "dataset.bigquery.query",
            "expected a SELECT",
        ),
        (_bigquery(colour="red"), "dataset.bigquery.colour", "unknown field"),
    ],
)
def test_a_bad_bigquery_source_names_the_field(data, field, expected):
    err = _error(data)
    assert err.field == field and expected in err.problem, err


def test_bigquery_options_on_a_file_source_and_other_splits_are_refused():
    data = _example()
    data["dataset"]["bigquery"] = {"order_column": "line"}
    err = _error(data)
    assert err.field == "dataset.bigquery" and "bq://" in err.problem
    data = _example()
    data["dataset"]["timestamp_format"] = "native"
    err = _error(data)
    assert err.field == "dataset.timestamp_format" and "BigQuery" in err.problem
    data = _bigquery()
    data["dataset"]["split"] = {"strategy": "random"}
    err = _error(data)
    assert err.field == "dataset.split.strategy" and "buyer_holdout" in err.problem


def test_the_registry_section_names_the_model_and_the_gate():
    config = cfg.load_config(EXAMPLE)
    assert config.registered_model_name == "online-retail-two-tower"
    assert config.registry.gate_k == 100 and config.registry.slice_tolerance == 0.01
    data = _example()
    data.pop("registry")
    default = cfg.parse_config(data, source="x.yaml", base_dir="configs")
    assert default.registered_model_name == default.experiment
    assert default.registry == cfg.Registry()


@pytest.mark.parametrize(
    "registry, experiment, field, expected",
    [
        ({"model_name": "team/model"}, None, "registry.model_name", "contain '/' or ':'"),
        ({"model_name": "a:b"}, None, "registry.model_name", "MLflow refuses 'a:b'"),
        ({"model_name": ".."}, None, "registry.model_name", "only dots"),
        ({"model_name": "x" * 257}, None, "registry.model_name", "256 characters"),
        ({}, "/Users/me/exp", "registry.model_name", "the experiment's name"),
        ({"gate_k": 20}, None, "registry.gate_k", "expected one of 10, 50, 100"),
        ({"slice_tolerance": -0.1}, None, "registry.slice_tolerance", ">= 0.0"),
        ({"slice_tolerance": 2}, None, "registry.slice_tolerance", "between 0 and 1"),
        ({"name": "x"}, None, "registry.name", "unknown field"),
    ],
)
def test_a_bad_registry_section_names_the_field(registry, experiment, field, expected):
    data = _example()
    data["registry"] = registry
    if experiment:
        data["experiment"] = experiment
    error = _error(data)
    assert error.field == field and expected in str(error), str(error)
