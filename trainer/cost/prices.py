"""The price table: packaged on-demand prices (prices.yaml), an environment's overrides, a rate.

An override has the table's shape (``machines``, ``accelerators``: name -> USD per hour;
``vcpu_hour``; ``spot_factor``); an entry it names replaces the packaged one, the rest stay.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from trainer.cost.machine import Machine

PRICES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.yaml")
OVERRIDE_KEYS = ("machines", "accelerators", "vcpu_hour", "spot_factor")
_NAMES = {
    "machines": (re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$"), "a machine type like n1-standard-8"),
    "accelerators": (
        re.compile(r"^(NVIDIA_[A-Z0-9_]+|TPU_[A-Z0-9_]+)$"),
        "an accelerator like NVIDIA_TESLA_T4",
    ),
}


class PriceError(ValueError):
    """A price override is invalid; ``field`` is its dotted name (``machines.n1-standard-8``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Hourly prices in ``currency``: whole machines, accelerators, a vCPU, and Spot's share."""

    machines: Mapping[str, float]
    accelerators: Mapping[str, float]
    vcpu_hour: float
    spot_factor: float
    as_of: str
    currency: str = "USD"
    overridden: tuple[str, ...] = ()

    def describe(self) -> str:
        """Which prices: ``USD list prices as of 2026-12-03; overridden: machines.n1-...``."""
        text = f"{self.currency} list prices as of {self.as_of}"
        return text + (f"; overridden: {', '.join(self.overridden)}" if self.overridden else "")

    def hourly(self, machine: Machine) -> tuple[float, list[str]]:
        """(the machine's price per hour, what it holds that the table has no price for).

        A machine type without an entry is priced per vCPU (``vcpu_hour``); an accelerator
        without one is priced 0 and named, so the estimate says it is short.
        """
        base = self.machines.get(machine.machine_type)
        if base is None:
            base = self.vcpu_hour * machine.vcpus
        missing = []
        accelerators = 0.0
        if machine.accelerator_type and machine.accelerator_count:
            each = self.accelerators.get(machine.accelerator_type)
            if each is None:
                missing.append(machine.accelerator_type)
            else:
                accelerators = each * machine.accelerator_count
        factor = self.spot_factor if machine.scheduling == "SPOT" else 1.0
        return (base + accelerators) * factor, missing


def _price(value: Any, field: str, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PriceError(field, f"expected a price in USD per hour like 0.437, got {value!r}")
    if value < 0 or (upper is not None and not 0 < value <= upper):
        expected = f"a number in (0, {upper:g}]" if upper is not None else "a price >= 0"
        raise PriceError(field, f"expected {expected}, got {value!r}")
    return float(value)


def check_overrides(data: Any) -> dict[str, Any]:
    """Checks an override of the price table; returns it with every price a float.

    Raises:
        PriceError: An unknown key, a malformed name or a price that is not a number >= 0
            (a ``spot_factor`` outside (0, 1]), naming the field.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PriceError("(prices)", f"expected a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(OVERRIDE_KEYS))
    if unknown:
        raise PriceError(unknown[0], f"unknown field (allowed: {', '.join(OVERRIDE_KEYS)})")
    out: dict[str, Any] = {}
    for section, (pattern, expected) in _NAMES.items():
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise PriceError(section, f"expected a mapping of names to prices, got {entries!r}")
        for name, value in entries.items():
            if not isinstance(name, str) or not pattern.match(name):
                raise PriceError(f"{section}.{name}", f"expected {expected}")
            out.setdefault(section, {})[name] = _price(value, f"{section}.{name}")
    if data.get("vcpu_hour") is not None:
        out["vcpu_hour"] = _price(data["vcpu_hour"], "vcpu_hour")
    if data.get("spot_factor") is not None:
        out["spot_factor"] = _price(data["spot_factor"], "spot_factor", upper=1.0)
    return out


def load_prices(overrides: Mapping[str, Any] | None = None, path: str = PRICES_FILE) -> PriceTable:
    """The packaged price table with ``overrides`` (an environment file's ``prices:``) applied.

    Raises:
        PriceError: The overrides are invalid (``check_overrides``).
    """
    import yaml

    with open(path, encoding="utf-8") as f:
        packaged = yaml.safe_load(f)
    checked = check_overrides(dict(overrides or {}))
    named = [f"{s}.{n}" for s in _NAMES for n in sorted(checked.get(s, {}))]
    named += [k for k in ("vcpu_hour", "spot_factor") if k in checked]
    return PriceTable(
        machines={**packaged["machines"], **checked.get("machines", {})},
        accelerators={**packaged["accelerators"], **checked.get("accelerators", {})},
        vcpu_hour=checked.get("vcpu_hour", packaged["vcpu_hour"]),
        spot_factor=checked.get("spot_factor", packaged["spot_factor"]),
        as_of=str(packaged["as_of"]),
        currency=packaged.get("currency", "USD"),
        overridden=tuple(named),
    )
