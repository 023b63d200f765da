"""Best-dev-checkpoint selection and early stopping.

A dev evaluation scores ``[BLEU, chrF]``, compared as a list: chrF breaks BLEU ties (every BLEU is 0 early
on). The weights of the best score so far are the ones a run writes; ``patience`` evaluations in a row
without a better score stop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def dev_score(scores: dict[str, Any]) -> list[float]:
    """What dev evaluations are compared by: [BLEU, chrF]."""
    return [scores["bleu"], scores["chrf"]]


@dataclass
class Selection:
    """The best dev evaluation so far and the evaluations since it (JSON-serialisable: checkpoints carry it)."""

    best_score: list[float] | None = None  # dev_score of the best evaluation
    best_step: int | None = None
    best_scores: dict[str, Any] = field(default_factory=dict)
    bad_evals: int = 0  # evaluations since the best one

    def record(self, step: int, scores: dict[str, Any]) -> bool:
        """Count the evaluation at ``step``; True when it is the best so far (keep its weights)."""
        score = dev_score(scores)
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step, self.best_scores = score, step, scores
            self.bad_evals = 0
            return True
        self.bad_evals += 1
        return False

    def should_stop(self, patience: int | None) -> bool:
        """Early stopping: ``patience`` evaluations without a better score (None: never stop)."""
        return patience is not None and self.bad_evals >= patience
