"""What every LVLM backend offers: answers to prompts built from (query, ICD sequence), and the probability of the
ground-truth answer (for InfoScore and the hard_plus_prob reward)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from leverplus.data.schemas import VQARecord

__all__ = ["LVLM", "Request", "Response"]


@dataclass(frozen=True)
class Request:
    query: VQARecord
    icds: tuple[VQARecord, ...]  # prompt order; each shows its multiple_choice_answer


@dataclass(frozen=True)
class Response:
    prediction: str  # post-processed answer text
    answer_prob: float | None  # probability of the GT answer given the prompt, when the backend can tell


class LVLM(Protocol):
    name: str

    def answer(self, requests: Sequence[Request]) -> list[Response]: ...

    def answer_prob(self, requests: Sequence[Request]) -> list[float]: ...
