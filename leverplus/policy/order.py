"""The one ordering convention between the selector's picks and the prompt.

The selector's **first pick sits next to the query**: a prompt lists the picks in reverse, so the k-shot prompt of a
policy is its first k picks with the most preferred one last (closest to the question), exactly where similarity
retrieval puts its best item and where InfoScore's beam search puts the ICD it chose first (it prepends each new
ICD). Every stored sequence (InfoScore beams, RL candidates, eval records) is in prompt order; training turns it
into pick order with `pick_order`, and every prompt built from picks goes through `prompt_order`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["pick_order", "prompt_order"]

T = TypeVar("T")


def prompt_order(picks: Sequence[T]) -> list[T]:
    """Picks (first = most preferred) -> prompt order (first pick last, next to the query)."""
    return list(reversed(picks))


def pick_order(prompt: Sequence[T]) -> list[T]:
    """A prompt-order sequence -> the order in which the selector picks it."""
    return list(reversed(prompt))
