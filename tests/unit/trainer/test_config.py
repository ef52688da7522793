"""Config validation: good files load, bad ones name the file, the field and the expectation."""

import datetime as dt

import pytest
import yaml

from trainer import config as cfg

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
    assert config.feature_config().buyer[0].name == cfg.HISTORY
    assert config.feature_config("ids").buyer[0].name == cfg.BUYER_ID
    assert config.model_config("adagrad64").optimizer == "adagrad"
    assert config.model_config().repurchase_scores and config.history_length == 200


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


def test_run_params_flatten_the_resolved_config():
    config = cfg.load_config(EXAMPLE)
    params = cfg.run_params(config, "ids", "adagrad64")
    assert params["model.learning_rate"] == "0.1"
    assert params["dataset.split.train_end"] == "2011-10-01"
    assert params["feature.buyer.buyer_id.transform"] == "vocabulary"
    assert params["training.batch_size"] == "4096"
