"""Noise-free ceilings for the simulated LVLM: what each way of choosing ICDs could reach on a question.

The sim backend knows its own expected accuracy for any prompt (`SimLVLM.expected_accuracy_many`), so the report can
put every system's measured accuracy beside references that contain no sampling noise:

  best-in-pool  the best ordered sequence of k pool items: exhaustive up to EXHAUSTIVE_LIMIT sequences, otherwise a
                beam search that adds each new ICD next to the query (the picking order of leverplus.policy.order)
  random        the mean over seeded random draws from the pool

Sequences are pool indices in prompt order.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np

from leverplus.data.schemas import VQARecord
from leverplus.lvlm.sim import SimLVLM

__all__ = ["EXHAUSTIVE_LIMIT", "best_in_pool", "best_sequence", "mean_random"]

EXHAUSTIVE_LIMIT = 40_000  # ordered sequences per question and shot count searched exhaustively
BEAM_WIDTH = 32


def best_in_pool(sim: SimLVLM, query: VQARecord, pool: Sequence[VQARecord], k: int) -> float:
    """Best expected accuracy of an ordered k-sequence of distinct pool items."""
    return best_sequence(sim, query, pool, k)[0]


def best_sequence(sim: SimLVLM, query: VQARecord, pool: Sequence[VQARecord], k: int) -> tuple[float, list[int]]:
    """The ordered k-sequence of distinct pool items (pool indices, prompt order) with the best expected accuracy,
    and that accuracy."""
    if k == 0:
        return sim.expected_accuracy(query, []), []
    if math.perm(len(pool), k) <= EXHAUSTIVE_LIMIT:
        seqs = _permutations(len(pool), k)
        scores = sim.expected_accuracy_many(query, pool, seqs)
        return float(scores.max()), seqs[int(np.argmax(scores))].tolist()
    beams = np.zeros((1, 0), dtype=int)
    for _ in range(k):
        # Prepend every unused item to every beam: each new pick goes to the far end of the prompt, so the first
        # pick stays next to the query, as the policy orders its picks.
        firsts = np.repeat(np.arange(len(pool)), len(beams))
        grown = np.concatenate([firsts[:, None], np.tile(beams, (len(pool), 1))], axis=1)
        fresh = ~(grown[:, 1:] == grown[:, :1]).any(axis=1)
        grown = grown[fresh]
        scores = sim.expected_accuracy_many(query, pool, grown)
        keep = np.argsort(-scores, kind="stable")[:BEAM_WIDTH]
        beams, best = grown[keep], float(scores[keep[0]])
    return best, beams[0].tolist()


@functools.cache
def _permutations(n: int, k: int) -> np.ndarray:
    """Every ordered k-sequence of distinct indices below n (read-only: one array serves every question)."""
    seqs = np.array(list(itertools.permutations(range(n), k)), dtype=np.int64).reshape(-1, k)
    seqs.flags.writeable = False
    return seqs


def mean_random(
    sim: SimLVLM, query: VQARecord, pool: Sequence[VQARecord], k: int, rng: np.random.Generator, draws: int = 16
) -> float:
    seqs = np.array([rng.choice(len(pool), size=k, replace=False) for _ in range(draws)])
    return float(sim.expected_accuracy_many(query, pool, seqs).mean())
