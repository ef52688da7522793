"""The ``search`` section, and the trials of the configs with distributions.

``expand`` turns a feature or model config whose fields hold distributions
(``trainer/config/distributions.py``) into its trials: concrete configs with the ids
``<id>~t01``, ``<id>~t02``, ..., each built by the section's own validator, so a drawn value
is checked as a written one is, and every choice option and range end is checked so before
any is drawn. Strategy grid lists every point of the distributions (choice, int_range);
random and halving draw ``search.trials`` distinct points from ``search.seed`` and the
config's id. Standard library only.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

from trainer import contract
from trainer.config import distributions
from trainer.config.schema import (
    SEARCH_STRATEGIES,
    TRIAL_SEPARATOR,
    ConfigError,
    ExperimentConfig,
    FeatureConfig,
    ModelConfig,
    Search,
    SearchStrategy,
    Space,
    Trial,
)
from trainer.config.strict_yaml import LineMap, Reader, line_of


def parse_search(r: Reader, data: Any, epochs: int, max_runs: int) -> Search:
    """The ``search`` section; a field its strategy does not use is an error."""
    field = "search"
    data = r.mapping(data, field, {f.name for f in dataclasses.fields(Search)})
    strategy = r.field(Search, data, "strategy", field, str, choices=SEARCH_STRATEGIES)
    for key in data:
        if key not in _used_fields(strategy):
            r.fail(
                f"{field}.{key}",
                f"is not used by strategy {strategy} (random and halving draw trials with "
                "a seed, halving alone has eta and min_epochs)",
                line_of(data, key),
            )
    search = Search(
        strategy=strategy,
        trials=r.field(Search, data, "trials", field, int, minimum=1),
        seed=r.field(Search, data, "seed", field, int),
        eta=r.field(Search, data, "eta", field, int, minimum=2),
        min_epochs=r.field(Search, data, "min_epochs", field, int, minimum=1),
    )
    if search.min_epochs > epochs:
        r.fail(
            f"{field}.min_epochs",
            f"expected at most training.epochs ({epochs}), got {search.min_epochs}",
            line_of(data, "min_epochs"),
        )
    if strategy != SearchStrategy.GRID and search.trials > max_runs:
        r.fail(
            f"{field}.trials",
            f"{search.trials} trials of a searched config are more runs than grid.max_runs "
            f"{max_runs}; lower search.trials or raise grid.max_runs",
            line_of(data, "trials"),
        )
    return search


def _used_fields(strategy: str) -> set[str]:
    used = {"strategy"}
    if strategy != SearchStrategy.GRID:
        used |= {"trials", "seed"}
    if strategy == SearchStrategy.HALVING:
        used |= {"eta", "min_epochs"}
    return used


def expand(
    r: Reader,
    section: str,
    items: list,
    search: Search,
    build: Callable[[Any, str], Any],
    max_runs: int,
) -> tuple[tuple, tuple[Space, ...]]:
    """The section's concrete configs (each searched one as its trials) and its spaces.

    Args:
        r: The reader of the file.
        section: ``feature_configs`` or ``model_configs``.
        items: The section's entries as read from YAML.
        search: The ``search`` section.
        build: The section's validator: (mapping, field path) -> config.
        max_runs: ``grid.max_runs``; a grid with more points is refused before it is listed.

    Raises:
        ConfigError: a bad distribution, a distribution on a field that takes none, an
            option or bound the field refuses, or a duplicate id (a trial's included).
    """
    configs, spaces, seen = [], [], {}
    for i, item in enumerate(items):
        field = f"{section}[{i}]"
        fields = distributions.find(r, section, item, field)
        if not fields:
            made, space = [build(item, field)], None
        else:
            made, space = _trials(r, (section, item, field), fields, search, build, max_runs)
            spaces.append(space)
            seen.setdefault(space.base_id, f"{field}, searched")
        for config in made:
            if config.id in seen:
                where = f" ({seen[config.id]})" if seen[config.id] else ""
                r.fail(f"{field}.id", f"duplicate id {config.id!r}{where}", line_of(item, "id"))
            seen[config.id] = f"a trial of {field}" if space else ""
        configs.extend(made)
    return tuple(configs), tuple(spaces)


def _trials(r: Reader, where: tuple, fields: list, search: Search, build, max_runs: int):
    """The trials of one searched entry: (concrete configs, its Space)."""
    section, item, field = where
    base_id = r.get(item, "id", field, str)
    base_name = r.get(item, "name", field, str, base_id)
    _check_values(r, item, field, fields, build)
    dists = [d for _, d in fields]
    if search.strategy == SearchStrategy.GRID:
        points = _grid(r, item, field, fields, max_runs)
    else:
        points = distributions.draws(
            dists, search.trials, f"{search.seed}/{section}/{base_id}", field
        )
    configs, trials = [], []
    for number, point in enumerate(points, 1):
        suffix = f"{TRIAL_SEPARATOR}t{number:02d}"
        data = with_value(item, ("id",), base_id + suffix)
        data = with_value(data, ("name",), f"{base_name} {suffix}")
        for (path, _), value in zip(fields, point, strict=True):
            data = with_value(data, path, value)
        config = build(data, field)
        values = tuple(
            (distributions.path_text(path), _value_of(config, path)) for path, _ in fields
        )
        configs.append(config)
        trials.append(Trial(config.id, number, values))
    return configs, Space(section, base_id, base_name, tuple(fields), tuple(trials))


def _check_values(r: Reader, item: dict, field: str, fields: list, build) -> None:
    """Each choice option and range end passes the field's checks, the others at their first."""
    firsts = item
    for path, dist in fields:
        firsts = with_value(firsts, path, distributions.ends(dist)[0])
    for path, dist in fields:
        where = f"{field}.{distributions.path_text(path)}"
        for value in distributions.ends(dist):
            try:
                build(with_value(firsts, path, value), field)
            except ConfigError as err:
                if err.field != where and not err.field.startswith((f"{where}[", f"{where}.")):
                    raise
                written = distributions.written(dist)[dist.kind]
                r.fail(
                    f"{where}.{dist.kind}",
                    f"{err.problem} (a value of {dist.kind} {written})",
                    err.line or distributions.line_at(item, path),
                )


def _grid(r: Reader, item: dict, field: str, fields: list, max_runs: int) -> list[tuple]:
    for path, dist in fields:
        if not dist.finite:
            r.fail(
                f"{field}.{distributions.path_text(path)}.{dist.kind}",
                f"strategy grid lists every value, and {dist.kind} has no finite set of them: "
                "use choice or int_range, or search.strategy random",
                distributions.line_at(item, path),
            )
    grids = [dist.points() for _, dist in fields]
    size = math.prod(len(g) for g in grids)
    if size > max_runs:
        r.fail(
            field,
            f"the grid of its distributions has {size} points, more than grid.max_runs "
            f"{max_runs}; narrow them, raise grid.max_runs or use search.strategy random",
            line_of(item, "id"),
        )
    return list(itertools.product(*grids))


def with_value(data: Any, path: tuple, value: Any) -> Any:
    """A copy of ``data`` with ``value`` at ``path`` (mappings keep their key lines)."""
    if not path:
        return [distributions.plain(v) for v in value] if isinstance(value, tuple) else value
    if isinstance(data, dict):
        out, inner = type(data)(data), data.get(path[0])
        if isinstance(data, LineMap):
            out.lines = dict(getattr(data, "lines", {}))
    else:
        out, inner = list(data), data[path[0]]
    out[path[0]] = with_value(inner, path[1:], value)
    return out


def _value_of(config: Any, path: tuple) -> Any:
    value = config
    for part in path:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    return value


def written_configs(config: ExperimentConfig, section: str, items: list[dict]) -> list[dict]:
    """A section's configs as ``to_dict`` gives them, each searched one back as written.

    The first trial of a space stands for it: its fields, with the base id and name and the
    distributions in place of the drawn values. Its other trials are left out.
    """
    out, written = [], set()
    for item in items:
        found = config.trial(section, item["id"])
        if found is None:
            out.append(item)
            continue
        space = found[0]
        if space.base_id in written:
            continue
        written.add(space.base_id)
        base = {**item, "id": space.base_id, "name": space.base_name}
        for path, dist in space.fields:
            base = with_value(base, path, distributions.written(dist))
        out.append(base)
    return out


def written_search(search: Search) -> dict:
    """The ``search`` section as written: the fields its strategy uses; {} for the default."""
    if search == Search():
        return {}
    return {
        f.name: getattr(search, f.name)
        for f in dataclasses.fields(Search)
        if f.name in _used_fields(search.strategy)
    }


def trial_params(
    config: ExperimentConfig, fc: FeatureConfig, mc: ModelConfig
) -> tuple[dict[str, str], list[str]]:
    """A run's ``search.*`` params, and the flattened config keys holding its drawn values.

    Empty for a run of two plain configs. The keys are those of ``run_params``
    (``model.dropout``, ``feature.buyer.history.max_length``), which maps them to the
    contract's names where it has one.
    """
    params, drawn = {}, []
    for section, name, prefix, chosen in (
        (distributions.FEATURE_SECTION, "feature_config", "feature", fc),
        (distributions.MODEL_SECTION, "model_config", "model", mc),
    ):
        found = config.trial(section, chosen.id)
        if found is None:
            continue
        space, trial = found
        params[contract.search_base_param(name)] = space.base_id
        params[contract.search_trial_param(name)] = str(trial.number)
        drawn += [_param_key(prefix, chosen, path) for path, _ in space.fields]
    if params:
        search = config.search
        params[contract.PARAM_SEARCH_STRATEGY] = search.strategy
        if search.strategy != SearchStrategy.GRID:
            params[contract.PARAM_SEARCH_SEED] = str(search.seed)
        if search.strategy == SearchStrategy.HALVING:
            params[contract.PARAM_SEARCH_ETA] = str(search.eta)
            params[contract.PARAM_SEARCH_MIN_EPOCHS] = str(search.min_epochs)
    return params, drawn


def _param_key(prefix: str, chosen: Any, path: tuple) -> str:
    if len(path) == 1:
        return f"{prefix}.{path[0]}"
    tower, index, key = path
    return f"{prefix}.{tower}.{getattr(chosen, tower)[index].name}.{key}"
