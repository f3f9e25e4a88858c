"""Turn (query, pool, ICD sequences) into padded tensors for the policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from leverplus.errors import DataError
from leverplus.features import FeatureTable
from leverplus.policy.bank import InputBank
from leverplus.policy.order import pick_order
from leverplus.policy.towers import TowerInputs

__all__ = ["PoolBatch", "Source", "make_batch", "sequences_to_actions"]


Source = FeatureTable | InputBank  # precomputed features (encoder frozen) or the towers' inputs (clip-lora)


@dataclass
class PoolBatch:
    query: torch.Tensor | TowerInputs  # (B, D) features, or inputs the policy's towers encode
    pool: torch.Tensor | TowerInputs  # (B, P, D)
    mask: torch.Tensor  # (B, P) True where a pool item exists
    pool_ids: list[list[int]]  # question_ids per row, in pool order

    def to(self, device: torch.device | str) -> PoolBatch:
        """The tensors on the policy's device (features, or the towers' inputs); ids stay Python."""
        return PoolBatch(self.query.to(device), self.pool.to(device), self.mask.to(device), self.pool_ids)


def make_batch(query_ids: Sequence[int], pools: Sequence[Sequence[int]], queries: Source, icds: Source) -> PoolBatch:
    if isinstance(icds, InputBank) and isinstance(queries, InputBank):
        mask = torch.zeros(len(pools), max(len(p) for p in pools), dtype=torch.bool)
        for row, ids in enumerate(pools):
            mask[row, : len(ids)] = True
        pool_ids = [list(p) for p in pools]
        return PoolBatch(queries.inputs(list(query_ids)), icds.inputs(pool_ids), mask, pool_ids)
    if isinstance(icds, InputBank) or isinstance(queries, InputBank):
        raise TypeError("queries and ICDs must both be feature tables or both be input banks")
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
    return group_actions(pool_ids, [[seq] for seq in sequences])[:, 0]


def group_actions(pool_ids: Sequence[Sequence[int]], groups: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """Each row's G sequences (a GRPO group's candidates) as pool indices in pick order. (N, G, T)"""
    actions = []
    for ids, sequences in zip(pool_ids, groups, strict=True):
        index = {qid: i for i, qid in enumerate(ids)}
        try:
            actions.append([[index[q] for q in pick_order(seq)] for seq in sequences])
        except KeyError as exc:
            raise DataError(f"ICD question_id {exc.args[0]} is not in its query's pool") from None
    return torch.tensor(actions, dtype=torch.long)
