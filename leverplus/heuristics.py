"""The non-learned ways to choose ICDs that a trained selector must beat, on the joint (image+question) embedding:

  similarity  the top-k of a pool by cosine to the query
  mmr         maximal marginal relevance: greedily the item with the best λ·cos(query, item) − (1−λ)·max cos(item,
              picked) — similarity with a penalty for near-duplicates of what is already picked
  retrieval   the top-k of the *whole* train split (what a practitioner retrieves; no pool at all)

Each returns picks in pick order, the most relevant first; callers put them in prompt order (policy/order.py), so
the first pick sits next to the query, as the selector's does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from leverplus.features import FeatureTable
from leverplus.pools import build_pools, rank_by_similarity

__all__ = ["mmr", "retrieve", "similarity_top"]


def similarity_top(query_vec: np.ndarray, items: np.ndarray, k: int) -> list[int]:
    """Indices of the k items most similar to the query, most similar first. query_vec (D,), items (N, D)."""
    return rank_by_similarity(query_vec, items)[:k].tolist()


def mmr(query_vec: np.ndarray, items: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices of k items by maximal marginal relevance, in pick order. λ = 1 is similarity top-k."""
    relevance = items @ query_vec  # (N,)
    redundancy = np.zeros(len(items))  # (N,) max cosine to a picked item; nothing picked yet: no penalty
    picks: list[int] = []
    for step in range(k):
        score = lam * relevance - (1 - lam) * redundancy
        score[picks] = -np.inf
        best = int(np.argmax(score))  # ties: the lower index, deterministic
        picks.append(best)
        redundancy = items @ items[best] if step == 0 else np.maximum(redundancy, items @ items[best])
    return picks


def retrieve(
    query_ids: Sequence[int], queries: FeatureTable, icds: FeatureTable, k: int, image_of: Mapping[int, int]
) -> dict[int, list[int]]:
    """Each query's top-k ICD question_ids over the whole train split, most similar first (the query itself and
    questions on its image excluded, as in every pool)."""
    tops = build_pools(query_ids, queries, icds, "similarity", k, seed=0, image_of=image_of)
    out = {}
    for qid, top in tops.items():
        order = rank_by_similarity(queries.joint([qid])[0], icds.joint(top))
        out[qid] = [top[i] for i in order.tolist()]
    return out
