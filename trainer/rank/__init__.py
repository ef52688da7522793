"""The ranking stage: candidates of the retrieval stage and the strong baseline, re-ranked.

``features`` builds the candidates and their dense (buyer, product) features from the
interactions before a split; ``stage`` fits the ranker on the validation window, cross-checks
it there, decides whether to keep it and ranks the test candidates.
"""

from trainer.rank.features import (
    FEATURES,
    Candidates,
    History,
    candidate_frame,
    history,
    window_days,
    with_labels,
)
from trainer.rank.stage import Ranked, frame_source, run_stage, save, top_lists

__all__ = [
    "FEATURES",
    "Candidates",
    "History",
    "Ranked",
    "candidate_frame",
    "frame_source",
    "history",
    "run_stage",
    "save",
    "top_lists",
    "window_days",
    "with_labels",
]
