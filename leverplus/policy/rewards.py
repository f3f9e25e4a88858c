"""Reward modes, computed from stored candidate fields at training time (so changing the mode needs no rescoring).
A missing field or a non-finite value is an error, never a silent fallback to another mode."""

from __future__ import annotations

import math

from leverplus.errors import ConfigError, DataError
from leverplus.records import Candidate

__all__ = ["REWARD_MODES", "reward"]

REWARD_MODES = ("hard", "soft", "hard_plus_soft", "hard_plus_prob", "prob")


def reward(candidate: Candidate, mode: str, question_id: int) -> float:
    if mode == "hard":
        value = float(candidate.correct)
    elif mode == "soft":
        value = candidate.accuracy
    elif mode == "hard_plus_soft":
        value = float(candidate.correct) + candidate.accuracy
    elif mode in ("hard_plus_prob", "prob"):
        if candidate.answer_prob is None:
            raise DataError(f"question_id {question_id}: reward {mode} needs answer_prob, which is missing")
        value = candidate.answer_prob + (float(candidate.correct) if mode == "hard_plus_prob" else 0.0)
    else:
        raise ConfigError(f"unknown reward mode {mode!r}; allowed: {', '.join(REWARD_MODES)}")
    if not math.isfinite(value):
        raise DataError(f"question_id {question_id}: non-finite reward {value} for ICDs {candidate.icd_ids}")
    return value
