"""What the report knows about a metric's name: its label, its direction, its display format.

Directions come from :func:`trainer.contract.metric_direction` (the one rule for the whole
product); :class:`RankMetric` interprets the ranking metric once for every page.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from trainer import contract


def label(metric: str) -> str:
    """Human label for a metric key: ``test_recall_at_100`` -> ``Test recall@100``."""
    text = metric.replace("_at_", "@").replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else metric


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric value for display: an em dash when missing, "NaN", "inf" or "-inf" as logged."""
    if value is None:
        return "\u2014"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e15:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    """A relative change (lift) as a signed percentage; an em dash when missing."""
    if value is None:
        return "\u2014"
    return f"{value * 100:+.1f}%"


# Beyond this a value cannot be drawn (matplotlib's axis span overflows to infinity) nor
# averaged with others; no recall or loss gets near it.
HUGE = 1e300


def present(value: float | None) -> bool:
    """Whether a value was logged and is a usable number: one that ranks, averages and plots.

    NaN, infinities and values beyond +-:data:`HUGE` are shown as logged but left out of
    ranks, means and charts.
    """
    return value is not None and math.isfinite(value) and abs(value) < HUGE


def non_finite(value: float | None) -> bool:
    """Whether a value was logged but is NaN, an infinity or beyond +-:data:`HUGE`."""
    return value is not None and not present(value)


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` improves downwards (losses, errors)."""
    return contract.metric_direction(metric) == contract.LOWER


def has_direction(metric: str) -> bool:
    """Whether "best" means something for ``metric``: a loss or a quality metric, not e.g. lr."""
    return contract.metric_direction(metric) is not None


def better(a: float, b: float, metric: str) -> bool:
    """Whether ``a`` beats ``b`` on ``metric`` (a metric without a direction: higher)."""
    return a < b if lower_is_better(metric) else a > b


def best_value(values: Iterable[float | None], metric: str) -> float | None:
    """Best of the present values (a metric without a direction: the highest), or None."""
    values = [v for v in values if present(v)]
    if not values:
        return None
    return min(values) if lower_is_better(metric) else max(values)


def _interval_keys(name: str) -> tuple[str, str, str]:
    k = contract.recall_k(name)
    if k is not None and name == contract.best_key(contract.val_recall_key(k)):
        centre = contract.chosen_val_recall_key(k)
    else:
        centre = name
    return centre, contract.ci_low_key(centre), contract.ci_high_key(centre)


@dataclasses.dataclass(frozen=True)
class RankMetric:
    """The metric that ranks the leaderboard and fills the heatmap, interpreted once.

    Attributes:
        name: The metric key runs logged (e.g. ``best_val_recall_at_100``).
        label: Its human label.
        lower_better: Whether lower values rank first (losses); otherwise higher do.
        epoch_metric: The per-epoch metric shown beside it (best and last epoch).
        lift_k: The k whose test recall is compared with the baselines' (lift).
        recall_columns: The k of each "Test R@k" column; the rank metric's own is left out.
        on_validation: Whether it is measured on validation (the default, fit to choose by);
            a test metric ranks only when asked for, and the pages say it was chosen on test.
        interval: (centre, low, high) metric keys of its bootstrap interval as evaluations log
            it: the best epoch's validation recall takes the chosen model's validation
            interval (``chosen_val_recall_at_<k>``), any other metric its own ``_ci_*``.
    """

    name: str
    label: str
    lower_better: bool
    epoch_metric: str
    lift_k: int
    recall_columns: tuple[int, ...]
    on_validation: bool = True
    interval: tuple[str, str, str] = ("", "", "")

    @classmethod
    def of(cls, name: str) -> RankMetric:
        """Interpret a metric key."""
        return cls(
            name=name,
            label=label(name),
            lower_better=lower_is_better(name),
            epoch_metric=contract.history_metric_of(name),
            lift_k=contract.recall_k(name) or max(contract.RECALL_KS),
            recall_columns=tuple(
                k for k in contract.RECALL_KS if contract.test_recall_key(k) != name
            ),
            on_validation=contract.on_validation(name),
            interval=_interval_keys(name),
        )

    @property
    def direction_word(self) -> str:
        """``"lower"`` or ``"higher"``: which way is better, for a sentence."""
        return "lower" if self.lower_better else "higher"
