"""Search spaces: distributions in the experiment YAML become trials, checked at parse time."""

import logging

import pytest

from tests.conftest import TINY_CONFIG
from trainer import config as cfg
from trainer import contract, sweep

BASE = TINY_CONFIG.format(source="/data/x.csv")
PLAIN_MODEL = "    learning_rate: 0.2\n"


def _text(model: str = "", search: str = "", buyer: str = "") -> str:
    """The tiny config with these lines in its model config, a search section, a buyer tower."""
    text = BASE.replace(PLAIN_MODEL, PLAIN_MODEL + model)
    if buyer:
        text = text.replace(
            "      - {name: buyer_id, transform: vocabulary, embedding_dim: 16}\n", buyer
        )
    return text + search


def _parse(model: str = "", search: str = "", buyer: str = "") -> cfg.ExperimentConfig:
    return cfg.parse_config_text(_text(model, search, buyer), source="exp.yaml")


def _error(model: str = "", search: str = "", buyer: str = "") -> cfg.ConfigError:
    with pytest.raises(cfg.ConfigError) as info:
        _parse(model, search, buyer)
    return info.value


def _line(text: str, snippet: str) -> int:
    """The 1-based line of the only line of ``text`` holding ``snippet``."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(lines) == 1, (snippet, lines)
    return lines[0]


RANDOM_SPACE = (
    "    dropout: {uniform: [0.0, 0.3]}\n"
    "    temperature: {loguniform: [0.05, 1.0]}\n"
    "    tower_layers: {choice: [[32], [64, 32]]}\n"
)


def _trials(config: cfg.ExperimentConfig) -> list[tuple]:
    return [(mc.id, mc.dropout, mc.temperature, mc.tower_layers) for mc in config.model_configs]


def test_random_draws_are_the_same_for_a_seed_and_other_for_another():
    search = "search: {strategy: random, trials: 5, seed: 7}\n"
    first, again = _parse(RANDOM_SPACE, search), _parse(RANDOM_SPACE, search)
    other = _parse(RANDOM_SPACE, search.replace("seed: 7", "seed: 8"))
    assert _trials(first) == _trials(again)
    assert [t[0] for t in _trials(first)] == [f"small~t0{i}" for i in range(1, 6)]
    assert [t[1:] for t in _trials(first)] != [t[1:] for t in _trials(other)]
    for mc in first.model_configs:
        assert 0.0 <= mc.dropout <= 0.3 and 0.05 <= mc.temperature <= 1.0
        assert mc.tower_layers in ((32,), (64, 32))
        assert mc.learning_rate == 0.2 and mc.embedding_dim == 16  # the plain fields stay


def test_the_draws_do_not_depend_on_the_order_of_the_yaml_keys():
    search = "search: {strategy: random, trials: 4, seed: 1}\n"
    reordered = "".join(reversed(RANDOM_SPACE.splitlines(keepends=True)))
    assert _trials(_parse(RANDOM_SPACE, search)) == _trials(_parse(reordered, search))


def test_draws_are_distinct_and_a_space_smaller_than_trials_gives_each_point_once(caplog):
    space = "    embedding_dim: {choice: [8, 16]}\n    logq_correction: {choice: [true, false]}\n"
    # The model config's own embedding_dim line gives way to the distribution.
    text = _text(space, "search: {strategy: random, trials: 9, seed: 3}\n")
    text = text.replace("    embedding_dim: 16\n    optimizer", "    optimizer")
    with caplog.at_level(logging.WARNING, logger="trainer.config"):
        config = cfg.parse_config_text(text)
    points = [(mc.embedding_dim, mc.logq_correction) for mc in config.model_configs]
    assert sorted(points) == [(8, False), (8, True), (16, False), (16, True)]
    assert "4 distinct points, fewer than search.trials 9" in caplog.text
    drawn = _parse(RANDOM_SPACE, "search: {strategy: random, trials: 30, seed: 0}\n")
    assert len(set(_trials(drawn))) == len({t[1:] for t in _trials(drawn)}) == 30


def test_grid_is_the_product_of_the_choices_and_int_ranges_in_order():
    space = (
        "    tower_layers: {choice: [[32], [64, 32]]}\n    temperature: {int_range: [1, 5, 2]}\n"
    )
    config = _parse(space)
    assert [(mc.id, mc.tower_layers, mc.temperature) for mc in config.model_configs] == [
        ("small~t01", (32,), 1.0),
        ("small~t02", (32,), 3.0),
        ("small~t03", (32,), 5.0),
        ("small~t04", (64, 32), 1.0),
        ("small~t05", (64, 32), 3.0),
        ("small~t06", (64, 32), 5.0),
    ]
    assert len(config.runs()) == 6
    (space_,) = config.spaces
    assert space_.base_id == "small" and len(space_.trials) == 6
    assert space_.trials[3].values == (("tower_layers", (64, 32)), ("temperature", 1.0))


def test_a_trial_is_rebuilt_from_the_dumped_yaml_and_its_id():
    config = _parse(RANDOM_SPACE, "search: {strategy: random, trials: 3, seed: 5}\n")
    again = cfg.parse_config_text(cfg.dump_config(config), source="exp.yaml")
    assert again == config
    trial = config.model_config("small~t02")
    assert again.model_config("small~t02") == trial
    assert trial.name == 'Small <b>"model"</b> é ~t02'
    assert "uniform" in cfg.dump_config(config) and "small~t02" not in cfg.dump_config(config)


def test_a_trials_params_carry_its_drawn_values_and_the_search():
    config = _parse(RANDOM_SPACE, "search: {strategy: random, trials: 3, seed: 5}\n")
    fc, mc = config.feature_config(), config.model_config("small~t03")
    params = cfg.run_params(config, fc, mc)
    assert params[contract.PARAM_MODEL_CONFIG_ID] == "small~t03"
    assert params["model.dropout"] == str(mc.dropout)
    assert params["model.temperature"] == str(mc.temperature)
    assert params["model.tower_layers"] == str(list(mc.tower_layers))
    assert params[contract.PARAM_SEARCH_STRATEGY] == "random"
    assert params[contract.PARAM_SEARCH_SEED] == "5"
    assert params[contract.search_base_param("model_config")] == "small"
    assert params[contract.search_trial_param("model_config")] == "3"
    drawn = params[contract.PARAM_SEARCH_DRAWN].split(",")
    assert drawn == ["model.tower_layers", "model.dropout", "model.temperature"]
    (space,) = config.spaces
    values = dict(space.trials[2].values)
    assert [params[name] for name in drawn] == [
        str(list(values["tower_layers"])),
        str(values["dropout"]),
        str(values["temperature"]),
    ]
    assert contract.search_base_param("feature_config") not in params
    plain = _parse()
    assert not any(k.startswith("search.") for k in cfg.run_params(plain, fc, plain.model_config()))


def test_a_contract_param_drawn_is_named_by_the_contract():
    text = _text().replace("    learning_rate: 0.2\n", "    learning_rate: {choice: [0.1, 0.3]}\n")
    config = cfg.parse_config_text(text)
    params = cfg.run_params(config, config.feature_config(), config.model_config("small~t02"))
    assert params[contract.PARAM_LEARNING_RATE] == "0.3"
    assert params[contract.PARAM_SEARCH_DRAWN] == contract.PARAM_LEARNING_RATE


BUYER_SPACE = (
    "      - name: buyer_id\n"
    "        transform: vocabulary\n"
    "        embedding_dim: {choice: [8, 16]}\n"
)


def test_a_feature_configs_trials_are_each_transformed_once_and_log_their_drawn_sizes():
    config = _parse(buyer=BUYER_SPACE)
    assert [fc.id for fc in config.feature_configs] == ["ids~t01", "ids~t02"]
    assert [fc.buyer[0].embedding_dim for fc in config.feature_configs] == [8, 16]
    transforms, trainings = sweep.plan(config)
    assert transforms == ["ids~t01", "ids~t02"]
    assert [t["feature_config_id"] for t in trainings] == ["ids~t01", "ids~t02"]
    params = cfg.run_params(config, config.feature_config("ids~t02"), config.model_config())
    assert params["feature.buyer.buyer_id.embedding_dim"] == "16"
    assert params[contract.PARAM_SEARCH_DRAWN] == "feature.buyer.buyer_id.embedding_dim"
    assert params[contract.search_base_param("feature_config")] == "ids"
    assert cfg.parse_config_text(cfg.dump_config(config), source="exp.yaml") == config


def test_trial_ids_work_as_run_keys_and_a_grid_pair_names_the_searched_config():
    text = _text("    temperature: {int_range: [1, 3]}\n") + (
        "grid:\n  include:\n    - {feature_config: ids, model_config: small}\n"
    )
    config = cfg.parse_config_text(text)
    assert [r.model_config_id for r in config.runs()] == ["small~t01", "small~t02", "small~t03"]
    key = sweep.run_key(config, "job-1", "ids", "small~t02", 1)
    assert key == "job-1/ids.small~t02.seed1"
    excluded = cfg.parse_config_text(
        text.replace(
            "include:\n    - {feature_config: ids, model_config: small}",
            "exclude:\n    - {feature_config: ids, model_config: small~t02}",
        )
    )
    assert [r.model_config_id for r in excluded.runs()] == ["small~t01", "small~t03"]
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse_config_text(text.replace("model_config: small}", "model_config: big}"))
    assert info.value.field == "grid.include[0].model_config"
    assert "(known: 'small')" in info.value.problem


def test_halving_draws_the_random_trials_and_exposes_its_rungs():
    halving = _parse(
        RANDOM_SPACE, "search: {strategy: halving, trials: 9, seed: 2, eta: 3, min_epochs: 1}\n"
    )
    random_ = _parse(RANDOM_SPACE, "search: {strategy: random, trials: 9, seed: 2}\n")
    assert _trials(halving) == _trials(random_)
    assert halving.search.eta == 3 and halving.search.min_epochs == 1
    # 9 runs (one seed), training.epochs 2: 9 runs for 1 epoch, then the best 3 for 2.
    assert halving.rungs == (cfg.Rung(epochs=1, runs=9), cfg.Rung(epochs=2, runs=3))
    assert random_.rungs == ()
    assert cfg.Search(eta=3, min_epochs=1).rungs(27, 9) == (
        cfg.Rung(1, 27),
        cfg.Rung(3, 9),
        cfg.Rung(9, 3),
    )
    assert cfg.parse_config_text(cfg.dump_config(halving), source="exp.yaml") == halving


@pytest.mark.parametrize(
    "model, search, field, snippet, expected",
    [
        (
            "    dropout: {choice: []}\n",
            "",
            "model_configs[0].dropout.choice",
            "dropout:",
            "non-empty list",
        ),
        (
            "    dropout: {uniform: [0.3, 0.1]}\n",
            "search: {strategy: random}\n",
            "model_configs[0].dropout.uniform",
            "dropout:",
            "low < high",
        ),
        (
            "    temperature: {loguniform: [0, 1]}\n",
            "search: {strategy: random}\n",
            "model_configs[0].temperature.loguniform",
            "temperature:",
            "above 0",
        ),
        (
            "    temperature: {int_range: [3, 1]}\n",
            "",
            "model_configs[0].temperature.int_range",
            "temperature:",
            "low < high",
        ),
        (
            "    dropout: {normal: [0, 1]}\n",
            "",
            "model_configs[0].dropout",
            "dropout:",
            "one key of choice, uniform, loguniform, int_range",
        ),
        (
            "    lr_schedule: {uniform: [0, 1]}\n",
            "search: {strategy: random}\n",
            "model_configs[0].lr_schedule.uniform",
            "lr_schedule:",
            "takes choice",
        ),
        (
            "    dropout: {choice: [0.1, 1.5]}\n",
            "",
            "model_configs[0].dropout.choice",
            "dropout:",
            "[0, 1)",
        ),
        (
            "    lr_schedule: {choice: [constant, cyclic]}\n",
            "",
            "model_configs[0].lr_schedule.choice",
            "lr_schedule:",
            "expected one of constant",
        ),
        (
            "    dropout: {uniform: [0.0, 0.3]}\n",
            "",
            "model_configs[0].dropout.uniform",
            "dropout:",
            "strategy grid lists every value",
        ),
        ("", "search: {strategy: random, trials: 0}\n", "search.trials", "search:", ">= 1"),
        ("", "search: {strategy: bayes}\n", "search.strategy", "search:", "grid, random, halving"),
        ("", "search: {trials: 4}\n", "search.trials", "search:", "not used by strategy grid"),
        (
            "",
            "search: {strategy: random, eta: 2}\n",
            "search.eta",
            "search:",
            "not used by strategy random",
        ),
        (
            "",
            "search: {strategy: halving, min_epochs: 3}\n",
            "search.min_epochs",
            "search:",
            "at most training.epochs (2)",
        ),
        (
            "",
            "search: {strategy: random, trials: 51}\n",
            "search.trials",
            "search:",
            "more runs than grid.max_runs 50",
        ),
        (
            "    temperature: {int_range: [1, 60]}\n",
            "",
            "model_configs[0]",
            "- id: small",
            "60 points, more than grid.max_runs 50",
        ),
    ],
)
def test_a_bad_space_fails_at_parse_time_naming_the_field_and_line(
    model, search, field, snippet, expected
):
    err = _error(model, search)
    assert err.field == field, err
    assert expected in err.problem, err
    assert err.line == _line(_text(model, search), snippet), err
    assert str(err).startswith(f"exp.yaml:{err.line}: {field}: ")


def test_a_distribution_on_a_field_that_takes_none_is_refused():
    text = BASE.replace("  - id: small\n", "  - id: {choice: [small, big]}\n")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse_config_text(text, source="exp.yaml")
    assert info.value.field == "model_configs[0].id"
    assert "cannot take a distribution" in info.value.problem
    assert info.value.line == _line(text, "id: {choice")
    buyer = BUYER_SPACE.replace(
        "transform: vocabulary", "transform: {choice: [vocabulary, hashing]}"
    )
    err = _error(buyer=buyer)
    assert err.field == "feature_configs[0].buyer[0].transform"
    assert "cannot take a distribution" in err.problem
    assert err.line == _line(_text(buyer=buyer), "transform: {choice")


def test_a_trial_id_that_another_config_has_is_a_duplicate():
    text = _text("    temperature: {int_range: [1, 2]}\n").replace(
        "training:\n", "  - id: small~t02\ntraining:\n"
    )
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse_config_text(text)
    assert info.value.field == "model_configs[1].id"
    assert "duplicate id 'small~t02' (a trial of model_configs[0])" in info.value.problem
