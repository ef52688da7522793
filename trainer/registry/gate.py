"""The promotion gate: the challenger against the champion on the same test buyers.

Both models' per-buyer test rows (``trainer.retrieval.per_buyer``: targets and hits at each k,
repeat and new apart) are paired by buyer and resampled together (``retrieval.
paired_bootstrap``: 2,000 resamples, seed 0, 95% percentile intervals; recall micro-averaged
inside each resample). The lift is the challenger's recall@k minus the champion's:

- **PROMOTE**: the lift's interval at ``k`` lies above zero, and no decisive slice (repeat
  targets, new targets, each activity band) loses more than ``tolerance`` (its point lift is
  above ``-tolerance``); and with no champion at all.
- **REJECT**: the interval lies below zero, or a decisive slice regresses: it loses more than
  ``tolerance`` and its own interval lies below zero.
- **INCONCLUSIVE**: anything else (the interval holds zero; a slice loses more than the
  tolerance without being surely worse; the two row sets are not the same buyers; no buyers).

A slice is decisive when both sides hold at least ``contract.GATE_MIN_SLICE_PAIRS`` target pairs
in it; smaller slices are reported and never decide. Activity bands are by the buyer's number
of test targets (``contract.ACTIVITY_BANDS``), the activity measure the per-buyer rows carry.
NumPy and pandas only: the gate is a pure function of two tables.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from trainer import contract, retrieval

CHALLENGER = "challenger"
CHAMPION = "champion"


@dataclasses.dataclass(frozen=True)
class SliceResult:
    """One slice's recall on both sides and the challenger's lift over the champion."""

    name: str
    pairs: int  # the challenger's target pairs in the slice (the same buyers and pairs)
    challenger: float
    champion: float
    lift: retrieval.Estimate
    decisive: bool  # enough pairs to decide anything
    blocks: bool  # loses more than the tolerance (point value): no PROMOTE
    regresses: bool  # blocks and its interval lies below zero: REJECT


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The gate's decision, why, and the figures it was made from."""

    decision: str  # contract.GATE_PROMOTE, GATE_REJECT or GATE_INCONCLUSIVE
    reason: str
    k: int
    tolerance: float
    champion_version: str = ""
    buyers: int = 0
    challenger: float = math.nan
    champion: float = math.nan
    lift: retrieval.Estimate | None = None
    slices: tuple[SliceResult, ...] = ()

    def figures(self) -> dict:
        """JSON-able figures (what the version's ``gate.figures`` tag holds)."""

        def num(x: float) -> float | None:
            return round(float(x), 6) if math.isfinite(x) else None

        def estimate(e: retrieval.Estimate | None) -> dict | None:
            return (
                None
                if e is None
                else {"value": num(e.value), "low": num(e.low), "high": num(e.high)}
            )

        return {
            "k": self.k,
            "tolerance": self.tolerance,
            "buyers": self.buyers,
            "challenger_recall": num(self.challenger),
            "champion_recall": num(self.champion),
            "lift": estimate(self.lift),
            "slices": [
                {
                    "name": s.name,
                    "pairs": s.pairs,
                    "challenger": num(s.challenger),
                    "champion": num(s.champion),
                    "lift": estimate(s.lift),
                    "decisive": s.decisive,
                }
                for s in self.slices
            ],
        }

    def tags(self) -> dict[str, str]:
        """The version's gate tags."""
        return {
            contract.TAG_GATE_DECISION: self.decision,
            contract.TAG_GATE_REASON: self.reason,
            contract.TAG_GATE_CHAMPION: self.champion_version,
            contract.TAG_GATE_FIGURES: json.dumps(self.figures(), sort_keys=True),
        }

    def line(self) -> str:
        """One line for a log or a terminal."""
        return f"{self.decision}: {self.reason}"


def _fmt(e: retrieval.Estimate) -> str:
    return f"{e.value:+.4f} [{e.low:+.4f}, {e.high:+.4f}]"


def no_champion(k: int, tolerance: float) -> GateResult:
    """The decision when no version holds ``champion`` yet: PROMOTE."""
    return GateResult(
        contract.GATE_PROMOTE, "no champion yet: the challenger becomes the first", k, tolerance
    )


def inconclusive(reason: str, k: int, tolerance: float, champion_version: str = "") -> GateResult:
    """An INCONCLUSIVE decision that says why (bad or missing input)."""
    return GateResult(contract.GATE_INCONCLUSIVE, reason, k, tolerance, champion_version)


def _lift(pairs: np.ndarray, ours: np.ndarray, theirs: np.ndarray, k: int) -> retrieval.Estimate:
    result = retrieval.paired_bootstrap(
        pairs, {CHALLENGER: ours[:, None], CHAMPION: theirs[:, None]}, CHALLENGER, (k,)
    )
    return result.comparisons[CHAMPION][k].lift


def _slice(name, pairs, ours, theirs, k, tolerance) -> SliceResult:
    keep = pairs > 0
    pairs, ours, theirs = pairs[keep], ours[keep], theirs[keep]
    total = int(pairs.sum())
    lift = _lift(pairs, ours, theirs, k)
    decisive = total >= contract.GATE_MIN_SLICE_PAIRS
    blocks = decisive and lift.value < -tolerance
    return SliceResult(
        name=name,
        pairs=total,
        challenger=ours.sum() / total if total else math.nan,
        champion=theirs.sum() / total if total else math.nan,
        lift=lift,
        decisive=decisive,
        blocks=blocks,
        regresses=blocks and lift.high < 0,
    )


def slices(joined: pd.DataFrame, k: int, tolerance: float) -> list[SliceResult]:
    """Repeat targets, new targets and each activity band, challenger against champion."""
    out = []
    for part in (contract.REPEAT, contract.NEW):
        p = joined[contract.pairs_column(part)].to_numpy()
        hit = contract.hits_column(k, part)
        out.append(
            _slice(
                f"{part} targets",
                p,
                joined[hit].to_numpy(),
                joined[f"{hit}_{CHAMPION}"].to_numpy(),
                k,
                tolerance,
            )
        )
    pairs = joined[contract.pairs_column()].to_numpy()
    hit = contract.hits_column(k)
    for name, low, high in contract.ACTIVITY_BANDS:
        inside = (pairs >= low) & (pairs <= (high if high is not None else np.inf))
        out.append(
            _slice(
                name,
                np.where(inside, pairs, 0),
                joined[hit].to_numpy(),
                joined[f"{hit}_{CHAMPION}"].to_numpy(),
                k,
                tolerance,
            )
        )
    return out


def _join(challenger: pd.DataFrame, champion: pd.DataFrame) -> pd.DataFrame | str:
    """The two row sets paired by buyer, or why they cannot be."""
    ours = challenger.set_index(contract.BUYER_ID)
    theirs = champion.set_index(contract.BUYER_ID)
    if ours.index.has_duplicates or theirs.index.has_duplicates:
        return "a buyer appears twice in one side's per-buyer rows"
    if set(ours.index) != set(theirs.index):
        shared = len(set(ours.index) & set(theirs.index))
        return (
            f"the champion's per-buyer rows are other buyers ({shared} shared of "
            f"{len(ours)} and {len(theirs)}): not the same test split"
        )
    same_pairs = ours[contract.pairs_column()].equals(
        theirs.loc[ours.index, contract.pairs_column()]
    )
    if not same_pairs:
        return "the two sides count other target pairs for the same buyers: not the same split"
    columns = [c for c in contract.per_buyer_columns() if c.startswith("hits") or "_hits_" in c]
    return ours.join(theirs.loc[ours.index, columns], rsuffix=f"_{CHAMPION}").reset_index()


def decide(
    challenger: pd.DataFrame,
    champion: pd.DataFrame,
    k: int = contract.DEFAULT_GATE_K,
    tolerance: float = contract.DEFAULT_SLICE_TOLERANCE,
    champion_version: str = "",
) -> GateResult:
    """PROMOTE, REJECT or INCONCLUSIVE from the two models' per-buyer test rows.

    Args:
        challenger: The challenger's rows (one scorer: the served model).
        champion: The champion's rows on the same test buyers.
        k: The cut-off whose lift decides.
        tolerance: Absolute recall@k any decisive slice may lose.
        champion_version: The champion's registered version (for the figures).
    """
    joined = _join(challenger, champion)
    if isinstance(joined, str):
        return inconclusive(joined, k, tolerance, champion_version)
    pairs = joined[contract.pairs_column()].to_numpy()
    if not len(joined) or pairs.sum() == 0:
        return inconclusive("no test buyers to compare on", k, tolerance, champion_version)
    hit = contract.hits_column(k)
    ours, theirs = joined[hit].to_numpy(), joined[f"{hit}_{CHAMPION}"].to_numpy()
    lift = _lift(pairs, ours, theirs, k)
    found = slices(joined, k, tolerance)
    decision, reason = _verdict(lift, found, k, tolerance)
    return GateResult(
        decision,
        reason,
        k,
        tolerance,
        champion_version,
        buyers=len(joined),
        challenger=ours.sum() / pairs.sum(),
        champion=theirs.sum() / pairs.sum(),
        lift=lift,
        slices=tuple(found),
    )


def _verdict(lift, found: list[SliceResult], k: int, tolerance: float) -> tuple[str, str]:
    measure = f"recall@{k} lift over the champion {_fmt(lift)}"
    regressed = [s for s in found if s.regresses]
    blocked = [s for s in found if s.blocks]
    if regressed:
        s = regressed[0]
        return contract.GATE_REJECT, (
            f"slice '{s.name}' regresses: lift {_fmt(s.lift)}, a loss beyond the tolerance "
            f"{tolerance} and surely below zero ({measure})"
        )
    if lift.high < 0:
        return contract.GATE_REJECT, f"{measure}: the interval lies below zero"
    if lift.low > 0 and not blocked:
        return contract.GATE_PROMOTE, (
            f"{measure}: the interval lies above zero and no slice loses more than {tolerance}"
        )
    if blocked:
        s = blocked[0]
        return contract.GATE_INCONCLUSIVE, (
            f"slice '{s.name}' loses more than the tolerance {tolerance} (lift {_fmt(s.lift)}), "
            f"not surely ({measure})"
        )
    if not math.isfinite(lift.low):
        return contract.GATE_INCONCLUSIVE, f"{measure}: no interval (no target pairs)"
    return contract.GATE_INCONCLUSIVE, f"{measure}: the interval holds zero"
