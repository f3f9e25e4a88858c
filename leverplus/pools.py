"""Per-query candidate pools: `size` ICD question_ids from the train split, never the query itself nor any other
question on the query's image (on VQAv2 those share answers: a leak), drawn by a named sampler. The pool is stored
with the query and the same sampler builds pools at evaluation.

  random      uniform without replacement
  similarity  the top-`size` by cosine of the joint (image+question) embedding
  stratified  rank by similarity, cut into deciles, draw size/10 at random from each (the lab's RL groups)
  retrieved   the standard two-stage design: the top of the similarity ranking, with a share `diversity` of the
              pool drawn by the stratified rule from the rest of the ranking (0: plain top-`size`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from leverplus.errors import ConfigError
from leverplus.features import FeatureTable

__all__ = ["SAMPLERS", "build_pools", "check_pool", "check_shots", "rank_by_similarity"]

SAMPLERS = ("random", "similarity", "stratified", "retrieved")
_CHUNK = 256  # queries per similarity block, so memory stays bounded on a 443k-item train split


def rank_by_similarity(query_vec: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Indices of items, most similar first. query_vec (D,), items (N, D)."""
    return np.argsort(-(items @ query_vec), kind="stable")


def _stratified(order: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    deciles = np.array_split(order, 10)
    per = [size // 10 + (1 if i < size % 10 else 0) for i in range(10)]  # remainder to the most similar deciles
    picks, spill = [], 0
    for decile, want in zip(deciles, per, strict=True):
        take = min(len(decile), want + spill)
        spill = want + spill - take
        picks.append(rng.choice(decile, size=take, replace=False))
    return np.concatenate(picks)


def build_pools(
    query_ids: Sequence[int],
    queries: FeatureTable,
    icds: FeatureTable,
    sampler: str,
    size: int,
    seed: int,
    image_of: Mapping[int, int],
    diversity: float = 0.0,
) -> dict[int, list[int]]:
    """Pool (ICD question_ids) for each query. Deterministic given the seed and each query's id. `image_of` maps
    question_ids (queries and ICDs) to image ids; ICDs on the query's image are excluded. `diversity` is the share
    of a `retrieved` pool drawn from beyond its top ranks."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown pool sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    icd_ids = icds.question_ids
    available = len(icd_ids) - (1 if set(query_ids) & set(icd_ids.tolist()) else 0)
    if size > available:
        raise ConfigError(f"pool.size {size} exceeds the {available} ICDs available in split {icds.split}")
    icd_matrix = icds.joint()
    icd_images = np.array([image_of.get(int(i), -1 - int(i)) for i in icd_ids])  # unknown: its own image
    pools: dict[int, list[int]] = {}
    for start in range(0, len(query_ids), _CHUNK):
        chunk = list(query_ids[start : start + _CHUNK])
        sims = queries.joint(chunk) @ icd_matrix.T  # (chunk, N)
        for qid, row in zip(chunk, sims, strict=True):
            rng = np.random.default_rng([seed, qid])
            order = np.argsort(-row, kind="stable")
            order = order[(icd_ids[order] != qid) & (icd_images[order] != image_of.get(qid, -1 - qid))]
            if len(order) < size:
                raise ConfigError(
                    f"question_id {qid}: only {len(order)} ICDs are not on its image, pool.size {size} wanted"
                )
            if sampler == "similarity":
                picked = order[:size]
            elif sampler == "retrieved":
                top = size - round(diversity * size)
                picked = np.concatenate([order[:top], _stratified(order[top:], size - top, rng)])
            elif sampler == "random":
                picked = rng.choice(order, size=size, replace=False)
            else:
                picked = _stratified(order, size, rng)
            pools[qid] = [int(i) for i in icd_ids[np.sort(picked)]]
    return pools


def check_shots(pool: Sequence[int], shots: int, question_id: int) -> None:
    """Asking for more shots than distinct pool items is an error, never a silent truncation."""
    distinct = len(set(pool))
    if shots > distinct:
        raise ConfigError(
            f"question_id {question_id}: {shots} shots requested but its pool has only {distinct} distinct items"
        )


def check_pool(question_id: int, image_id: int, pool_images: Mapping[int, int]) -> None:
    """A pool (question_id -> image_id of each item) must hold no question on the query's image, whoever wrote it."""
    leaks = sorted(q for q, image in pool_images.items() if image == image_id or q == question_id)
    if leaks:
        raise ConfigError(
            f"question_id {question_id}: its pool holds {leaks[:5]}, on the query's own image (the answer would leak)"
        )
