"""Distributions on config fields: reading them from YAML, listing and drawing their points.

A model config field, or a feature's size (``embedding_dim``, ``max_length``, ...), may be a
distribution instead of a value: a mapping with one key, the distribution's kind::

    learning_rate: {loguniform: [0.001, 0.05]}
    dropout: {uniform: [0.0, 0.3]}
    embedding_dim: {choice: [32, 64, 128]}
    tower_layers: {choice: [[128], [256, 128]]}
    temperature: {int_range: [1, 4]}        # integers, both ends included; [1, 9, 2]: a step

None of these fields takes a mapping as its plain value, so a mapping there is always a
distribution. ``trainer/config/search.py`` makes the trials of a config from them. Standard
library only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from typing import Any

from trainer.config.schema import (
    DISTRIBUTION_KINDS,
    Distribution,
    DistributionKind,
    Feature,
    FeatureConfig,
    ModelConfig,
)
from trainer.config.strict_yaml import Reader, line_of

log = logging.getLogger(__name__)

FEATURE_SECTION, MODEL_SECTION = "feature_configs", "model_configs"
TOWERS = ("buyer", "product")
# Significant digits a drawn number keeps: readable params, and still distinct draws.
DRAW_DIGITS = 4
_Kind = DistributionKind
# The distributions a field of each type takes (any other type: a choice).
_KINDS_OF_TYPE = {
    "int": (_Kind.CHOICE, _Kind.INT_RANGE),
    "float": (_Kind.CHOICE, _Kind.UNIFORM, _Kind.LOGUNIFORM, _Kind.INT_RANGE),
}


def _types(cls: type) -> dict[str, str]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


# The fields that take a distribution, with their types as the schema writes them: every
# model config field but its id and name; a feature's sizes, not its column, transform or
# crossed column (they decide which inputs the towers have).
SEARCHABLE = {
    MODEL_SECTION: {k: t for k, t in _types(ModelConfig).items() if k not in ("id", "name")},
    FEATURE_SECTION: {k: t for k, t in _types(Feature).items() if t == "int"},
}


def find(r: Reader, section: str, item: Any, field: str) -> list:
    """(path, distribution) of each field of an entry given as a mapping."""
    if not isinstance(item, dict):
        return []
    found = []
    for key, value in item.items():
        if isinstance(value, dict):
            found.append(_distribution_at(r, section, item, (key,), field))
        elif section == FEATURE_SECTION and key in TOWERS and isinstance(value, list):
            for i, feature in enumerate(value):
                for name, v in feature.items() if isinstance(feature, dict) else ():
                    if isinstance(v, dict):
                        found.append(_distribution_at(r, section, feature, (key, i, name), field))
    # In the schema's field order, so the draws do not depend on the order of the YAML keys.
    return sorted((f for f in found if f is not None), key=lambda f: _schema_order(f[0]))


def _schema_order(path: tuple) -> tuple:
    if len(path) == 1:  # a model config's field (a feature config's own fields take none)
        return (list(_types(ModelConfig)).index(path[0]),)
    tower, index, key = path
    return (TOWERS.index(tower), index, list(_types(Feature)).index(key))


def _distribution_at(r: Reader, section: str, parent: dict, path: tuple, field: str):
    """The distribution at ``path``; None for an unknown field (the validator names it)."""
    key, where, line = path[-1], f"{field}.{path_text(path)}", line_of(parent, path[-1])
    if section == MODEL_SECTION or len(path) == 3:
        owner = ModelConfig if section == MODEL_SECTION else Feature
        searchable = SEARCHABLE[section]
    else:  # a feature config's own field: its id, name or a tower
        owner, searchable = FeatureConfig, {}
    if key not in _types(owner):
        return None
    kind_of_type = searchable.get(key)
    if kind_of_type is None:
        r.fail(
            where,
            f"cannot take a distribution (fields that can: {', '.join(SEARCHABLE[section])})",
            line,
        )
    dist = _distribution(r, parent[key], where, line)
    allowed = _KINDS_OF_TYPE.get(kind_of_type, (_Kind.CHOICE,))
    if dist.kind not in allowed:
        r.fail(
            f"{where}.{dist.kind}",
            f"{key} ({kind_of_type}) takes {' or '.join(allowed)}, not {dist.kind}",
            line,
        )
    return path, dist


def _distribution(r: Reader, value: dict, where: str, line: int | None) -> Distribution:
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTION_KINDS:
        r.fail(
            where,
            "a mapping here is a distribution, one key of "
            f"{', '.join(DISTRIBUTION_KINDS)} with its list (e.g. {{choice: [32, 64]}}), got "
            f"the keys {', '.join(map(str, value)) or 'none'}",
            line,
        )
    kind = next(iter(value))
    where, line, items = f"{where}.{kind}", line_of(value, kind) or line, value[kind]
    if not isinstance(items, list) or not items:
        r.fail(where, f"expected a non-empty list, got {items!r}", line)
    if kind == _Kind.CHOICE:
        options = tuple(_frozen(v) for v in items)
        for i, option in enumerate(options):
            if option in options[:i]:
                r.fail(where, f"option {items[i]!r} is given twice", line)
        return Distribution(kind, options)
    if kind == _Kind.INT_RANGE:
        return _int_range(r, items, where, line)
    return _continuous(r, kind, items, where, line)


def _int_range(r: Reader, items: list, where: str, line: int | None) -> Distribution:
    if len(items) not in (2, 3) or not all(_is_int(v) for v in items):
        r.fail(where, f"expected [low, high] or [low, high, step] of integers, got {items}", line)
    low, high, step = (*items, 1)[:3]
    if low >= high:
        r.fail(where, f"expected low < high (one value is a plain field), got {items}", line)
    if step < 1:
        r.fail(where, f"expected a step >= 1, got {step}", line)
    return Distribution(_Kind.INT_RANGE.value, (low, high, step))


def _continuous(r: Reader, kind: str, items: list, where: str, line: int | None) -> Distribution:
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in items]
    if len(items) != 2 or not all(numbers) or not all(math.isfinite(v) for v in items):
        r.fail(where, f"expected [low, high], two finite numbers, got {items}", line)
    low, high = float(items[0]), float(items[1])
    if low >= high:
        r.fail(where, f"expected low < high (one value is a plain field), got {items}", line)
    if kind == _Kind.LOGUNIFORM and low <= 0:
        r.fail(where, f"a log-uniform distribution needs bounds above 0, got {items}", line)
    return Distribution(kind, (low, high))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _frozen(value: Any) -> Any:
    """A YAML list as a tuple (hashable, as the schema holds lists), all the way down."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def ends(dist: Distribution) -> tuple:
    """The values that stand for a distribution's range: every option, or both ends."""
    if dist.kind == _Kind.CHOICE:
        return dist.values
    points = dist.points() if dist.finite else dist.values
    return (points[0], points[-1])


def draws(dists: list[Distribution], trials: int, seed: str, field: str) -> list[tuple]:
    """``trials`` distinct points (or all there are, said in a log line), drawn from ``seed``.

    A finite space is sampled without replacement; one with a continuous distribution is
    drawn until ``trials`` distinct points are found (or 100 draws per trial are spent).
    """
    rng = random.Random(seed)  # a str seed is hashed with SHA-512: the same in every process
    if all(d.finite for d in dists):
        grids = [d.points() for d in dists]
        size = math.prod(len(g) for g in grids)
        if size < trials:
            log.warning(
                "%s: its space has %d distinct points, fewer than search.trials %d: "
                "each is one trial",
                field,
                size,
                trials,
            )
        return [_point(i, grids) for i in rng.sample(range(size), min(size, trials))]
    seen, points = set(), []
    for _ in range(trials * 100):
        point = tuple(_draw(d, rng) for d in dists)
        if point not in seen:
            seen.add(point)
            points.append(point)
        if len(points) == trials:
            return points
    log.warning(
        "%s: %d draws found %d distinct points, fewer than search.trials %d",
        field,
        trials * 100,
        len(points),
        trials,
    )
    return points


def _point(index: int, grids: list) -> tuple:
    """The grid point of a flat index (the last field varying fastest, as in the grid)."""
    values = []
    for grid in reversed(grids):
        index, i = divmod(index, len(grid))
        values.append(grid[i])
    return tuple(reversed(values))


def _draw(dist: Distribution, rng: random.Random) -> Any:
    if dist.finite:
        points = dist.points()
        return points[rng.randrange(len(points))]
    low, high = dist.values
    if dist.kind == _Kind.LOGUNIFORM:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return min(max(float(f"{value:.{DRAW_DIGITS}g}"), low), high)


def path_text(path: tuple) -> str:
    """A path inside a config as the error messages write it: ``buyer[0].max_length``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def plain(value: Any) -> Any:
    """A tuple as a YAML list, all the way down."""
    return [plain(v) for v in value] if isinstance(value, tuple) else value


def line_at(item: dict, path: tuple) -> int | None:
    """The YAML line of the field at ``path`` in an entry, if known."""
    parent = item
    for part in path[:-1]:
        parent = parent[part]
    return line_of(parent, path[-1])


def written(dist: Distribution) -> dict:
    """A distribution as the YAML gives it."""
    values = list(dist.values)
    if dist.kind == _Kind.INT_RANGE and values[2] == 1:
        values = values[:2]
    return {dist.kind: [plain(v) for v in values]}
