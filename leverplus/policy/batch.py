"""Turn (query, pool, ICD sequences) into padded tensors for the policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leverplus.errors import DataError
from leverplus.features import FeatureTable
from leverplus.policy.order import pick_order

__all__ = ["PoolBatch", "make_batch", "sequences_to_actions"]


@dataclass
class PoolBatch:
    query: torch.Tensor  # (B, D)
    pool: torch.Tensor  # (B, P, D)
    mask: torch.Tensor  # (B, P) True where a pool item exists
    pool_ids: list[list[int]]  # question_ids per row, in pool order

    def repeat(self, n: int) -> PoolBatch:
        """Each row repeated n times (one per candidate of a group)."""
        return PoolBatch(
            self.query.repeat_interleave(n, 0),
            self.pool.repeat_interleave(n, 0),
            self.mask.repeat_interleave(n, 0),
            [ids for ids in self.pool_ids for _ in range(n)],
        )


def make_batch(
    query_ids: Sequence[int], pools: Sequence[Sequence[int]], queries: FeatureTable, icds: FeatureTable
) -> PoolBatch:
    width = max(len(p) for p in pools)
    pool = np.zeros((len(pools), width, icds.dim), dtype=np.float32)
    mask = np.zeros((len(pools), width), dtype=bool)
    for row, ids in enumerate(pools):
        pool[row, : len(ids)] = icds.joint(list(ids))
        mask[row, : len(ids)] = True
    return PoolBatch(
        query=torch.from_numpy(queries.joint(list(query_ids))),
        pool=torch.from_numpy(pool),
        mask=torch.from_numpy(mask),
        pool_ids=[list(p) for p in pools],
    )


def sequences_to_actions(pool_ids: Sequence[Sequence[int]], sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """ICD question_id sequences in prompt order -> pool indices in pick order (policy/order.py). (N, T)"""
    actions = []
    for ids, seq in zip(pool_ids, sequences, strict=True):
        index = {qid: i for i, qid in enumerate(ids)}
        try:
            actions.append([index[q] for q in pick_order(seq)])
        except KeyError as exc:
            raise DataError(f"ICD question_id {exc.args[0]} is not in its query's pool") from None
    return torch.tensor(actions, dtype=torch.long)
