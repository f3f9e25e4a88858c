"""Training groups as arrays (policy/groups.py): the same groups, in question-id order, as the Python lists the
loops used to hold, and the same training."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from leverplus.errors import DataError
from leverplus.features import FeatureTable
from leverplus.policy import PointerSelector, PolicyConfig
from leverplus.policy.groups import Group, GroupTableBuilder
from leverplus.policy.train import train_grpo, train_rce


def _groups(n: int, seed: int = 0) -> list[Group]:
    rng = random.Random(seed)
    groups = []
    for q in rng.sample(range(100, 160), n):
        pool = rng.sample([i for i in range(60) if i != q - 100], rng.choice([8, 12]))  # pools of two widths
        sequences = [rng.sample(pool, 2) for _ in range(4)]
        groups.append(Group(q, pool, sequences, [rng.random() for _ in range(4)]))
    return groups


def _table(groups: list[Group], chunk: int = 3):
    builder = GroupTableBuilder(chunk=chunk)
    for g in groups:
        builder.add(g.question_id, g.pool, g.sequences, g.rewards)
    return builder.build()


def test_a_table_holds_the_groups_sorted_by_question_id_across_chunks() -> None:
    groups = _groups(10)
    table = _table(groups)  # chunks of 3: widths differ between chunks, padding must not leak into pools
    expected = sorted(groups, key=lambda g: g.question_id)
    assert len(table) == 10 and list(table) == expected
    assert table[2] == expected[2] and table[3:7] == expected[3:7] and table[-1] == expected[-1]
    assert table.nbytes == sum(a.nbytes for a in (table.question_ids, table.pools, table.pool_lengths,
                                                  table.sequences, table.rewards))  # fmt: skip
    assert len(_table([])) == 0


def test_ragged_groups_are_a_data_error() -> None:
    builder = GroupTableBuilder()
    builder.add(1, [1, 2, 3], [[1, 2], [2, 3]], [1.0, 0.0])
    builder.add(2, [1, 2, 3], [[1, 2]], [1.0])
    with pytest.raises(DataError, match="differ in candidates per query or shots"):
        builder.build()


@pytest.mark.parametrize("loop", ["rce", "grpo"])
def test_training_on_a_table_equals_training_on_the_list(loop: str) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.random((160, 6)).astype(np.float32)
    features = FeatureTable("simple", "train", np.arange(160, dtype=np.int64), vecs[:, :3], vecs[:, 3:])
    groups = sorted(_groups(12), key=lambda g: g.question_id)
    groups = [Group(g.question_id, [p + 100 for p in g.pool], [[p + 100 for p in s] for s in g.sequences], g.rewards)
              for g in groups]  # fmt: skip
    torch.manual_seed(0)
    start = PointerSelector(PolicyConfig(feature_dim=6, hidden=16, heads=2))
    options = {"epochs": 2, "lr": 1e-2, "batch_size": 5, "grad_clip": 1.0, "seed": 3, "sink": lambda *_: None}
    if loop == "rce":

        def train(data):
            return train_rce(copy.deepcopy(start), data, features, features, tau_start=2.0, tau_end=0.5, **options)
    else:

        def train(data):
            return train_grpo(copy.deepcopy(start), data, features, features, beta=0.1, clip_eps=0.2, **options)

    from_list, from_table = train(groups), train(_table(groups))
    for a, b in zip(from_list.state_dict().values(), from_table.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(next(iter(from_list.state_dict().values())), next(iter(start.state_dict().values())))
