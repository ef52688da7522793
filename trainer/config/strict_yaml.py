"""Strict YAML reading for config files: line numbers, duplicate keys, no implicit dates.

PyYAML's safe loader keeps the last of two equal keys silently and turns an unquoted
``2011-13-01`` into a ``ValueError`` from ``datetime``. Config files need neither: this
loader rejects duplicate keys, leaves every scalar that looks like a date a string (the
schema parses dates and says what it expected), and remembers the line of each mapping key
so an error can point at it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import yaml

from trainer.config.schema import ConfigError


class YamlProblem(ValueError):
    """A file that is not valid YAML for a config; ``line`` is 1-based or None."""

    def __init__(self, problem: str, line: int | None = None, key: str = ""):
        self.problem, self.line, self.key = problem, line, key
        super().__init__(problem)


class LineMap(dict):
    """A mapping that knows the 1-based line of each of its keys (``lines``)."""

    lines: dict[Any, int]


class _StrictLoader(yaml.SafeLoader):
    """Safe loader: duplicate keys are errors, dates stay strings, keys carry lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineMap:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, got {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        out = LineMap()
        out.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in out:
                raise YamlProblem(
                    f"duplicate key {key!r} (first on line {out.lines[key]})",
                    key_node.start_mark.line + 1,
                    str(key),
                )
            out[key] = self.construct_object(value_node, deep=deep)
            out.lines[key] = key_node.start_mark.line + 1
        return out


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)
# Dates are parsed by the schema, which names the field and the expected format.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def loads(text: str) -> Any:
    """Parses config YAML text; mappings come back as ``LineMap``.

    Raises:
        YamlProblem: invalid YAML or a duplicate key, with the line where the parser has one.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise YamlProblem(f"not valid YAML: {problem}", mark.line + 1 if mark else None) from err


def decode(data: bytes) -> str:
    """Config bytes as text: UTF-8 (with or without a byte-order mark) or a clear error."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise YamlProblem(
            f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the file as UTF-8",
            line,
        ) from err


def line_of(mapping: Any, key: Any) -> int | None:
    """The line of ``key`` in a mapping read by ``loads``, if known."""
    lines = getattr(mapping, "lines", None)
    return lines.get(key) if lines else None


def field_default(cls: type, name: str) -> Any:
    """The dataclass field's default: the one place a config default is written."""
    field = cls.__dataclass_fields__[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return ...  # required


class Reader:
    """Typed access to a YAML mapping that reports errors by dotted field path and line."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str, line: int | None = None):
        """Raises ConfigError for a field."""
        raise ConfigError(self.source, field, problem, line)

    def mapping(self, value: Any, field: str, allowed: set[str] | None = None) -> dict:
        """The value as a mapping whose keys are all in ``allowed``."""
        if not isinstance(value, dict):
            self.fail(field, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed, key=str) if allowed is not None else []
        if unknown:
            self.fail(
                f"{field}.{unknown[0]}" if field else str(unknown[0]),
                f"unknown field (expected one of: {', '.join(sorted(allowed))})",
                line_of(value, unknown[0]),
            )
        return value

    def get(self, data: dict, key: str, field: str, kind, default=..., choices=None, minimum=None):
        """A typed, checked field of ``data``; ``default`` when absent (``...``: required)."""
        path = f"{field}.{key}" if field else key
        line = line_of(data, key)
        if key not in data or data[key] is None:
            if default is ...:
                self.fail(path, "required field is missing")
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is dt.date:
            return self.date(value, path, line)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"expected {kind_name(kind)}, got {value!r}", line)
        if kind is float and not math.isfinite(value):
            self.fail(path, f"expected a finite number, got {value!r}", line)
        if choices is not None and value not in choices:
            self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}", line)
        if minimum is not None and value < minimum:
            self.fail(path, f"expected a value >= {minimum}, got {value!r}", line)
        if kind is str and not value.strip() and default != "":
            self.fail(path, "expected a non-empty string", line)
        return value

    def field(self, cls: type, data: dict, key: str, field: str, kind, **checks):
        """``get`` with the dataclass field's default."""
        return self.get(data, key, field, kind, field_default(cls, key), **checks)

    def date(self, value: Any, path: str, line: int | None = None) -> dt.date:
        """A date from a date or an ISO string."""
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(path, f"expected a date YYYY-MM-DD, got {str(value)!r}", line)

    def items(self, data: dict, key: str, field: str, required: bool = True) -> list:
        """A list field (non-empty when required)."""
        path = f"{field}.{key}" if field else key
        value = data.get(key)
        if value is None and not required:
            return []
        if not isinstance(value, list) or (required and not value):
            self.fail(path, "expected a non-empty list", line_of(data, key))
        return value

    def ints(self, data: dict, key: str, field: str, minimum: int | None = None) -> list[int]:
        """A list of integers (each >= ``minimum`` when given)."""
        values = self.items(data, key, field, required=False)
        for i, v in enumerate(values):
            if (
                not isinstance(v, int)
                or isinstance(v, bool)
                or (minimum is not None and v < minimum)
            ):
                bound = f" >= {minimum}" if minimum is not None else ""
                self.fail(
                    f"{field}.{key}[{i}]",
                    f"expected an integer{bound}, got {v!r}",
                    line_of(data, key),
                )
        return values


def kind_name(kind) -> str:
    """The expectation for a Python type in error messages ("an integer", ...)."""
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }.get(kind, kind.__name__)
