"""What RCE and GRPO train on: groups of scored candidate sequences, held as arrays.

A balanced set of 400k queries as Python lists would take ~10 kB per group; as arrays it takes what its numbers take
(pool and candidate ids as int64, rewards as float64). The loops index a `GroupTable` like a list of `Group`s; only a
batch's groups are ever built as Python objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from leverplus.errors import DataError

__all__ = ["Group", "GroupTable", "GroupTableBuilder"]


@dataclass(frozen=True)
class Group:
    question_id: int
    pool: list[int]
    sequences: list[list[int]]  # G candidate ICD sequences
    rewards: list[float]  # (G,)


class GroupTable(Sequence[Group]):
    def __init__(
        self,
        question_ids: np.ndarray,  # (N,)
        pools: np.ndarray,  # (N, P), padded with -1 past each pool's length
        pool_lengths: np.ndarray,  # (N,)
        sequences: np.ndarray,  # (N, G, T)
        rewards: np.ndarray,  # (N, G)
    ) -> None:
        self.question_ids, self.pools, self.pool_lengths = question_ids, pools, pool_lengths
        self.sequences, self.rewards = sequences, rewards

    def __len__(self) -> int:
        return len(self.question_ids)

    @overload
    def __getitem__(self, index: int) -> Group: ...
    @overload
    def __getitem__(self, index: slice) -> list[Group]: ...
    def __getitem__(self, index: int | slice) -> Group | list[Group]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Group(
            int(self.question_ids[index]),
            self.pools[index, : self.pool_lengths[index]].tolist(),
            self.sequences[index].tolist(),
            self.rewards[index].tolist(),
        )

    def __iter__(self) -> Iterator[Group]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        arrays = (self.question_ids, self.pools, self.pool_lengths, self.sequences, self.rewards)
        return sum(a.nbytes for a in arrays)


class GroupTableBuilder:
    """Collects groups one at a time, turning every `chunk` of them into arrays, so Python lists never hold more
    than a chunk."""

    def __init__(self, chunk: int = 4096) -> None:
        self.chunk = chunk
        self._rows: list[tuple[int, Sequence[int], Sequence[Sequence[int]], Sequence[float]]] = []
        self._chunks: list[list[np.ndarray]] = [[] for _ in range(5)]  # per column: one array per chunk

    def add(
        self, question_id: int, pool: Sequence[int], sequences: Sequence[Sequence[int]], rewards: Sequence[float]
    ) -> None:
        self._rows.append((question_id, pool, sequences, rewards))
        if len(self._rows) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        width = max(len(r[1]) for r in self._rows)
        pools = np.full((len(self._rows), width), -1, dtype=np.int64)
        for row, (_, pool, _, _) in enumerate(self._rows):
            pools[row, : len(pool)] = pool
        try:
            sequences = np.asarray([r[2] for r in self._rows], dtype=np.int64)
            rewards = np.asarray([r[3] for r in self._rows], dtype=np.float64)
        except ValueError as exc:  # ragged: groups of different sizes or sequence lengths
            raise DataError(f"training groups differ in candidates per query or shots ({exc})") from None
        question_ids = np.asarray([r[0] for r in self._rows], dtype=np.int64)
        lengths = np.asarray([len(r[1]) for r in self._rows], dtype=np.int64)
        for chunks, array in zip(self._chunks, (question_ids, pools, lengths, sequences, rewards), strict=True):
            chunks.append(array)
        self._rows = []

    def build(self) -> GroupTable:
        """Every group added, sorted by question id (the order training sees does not depend on how a version was
        split into segments). Columns are joined one at a time, each column's chunks freed once joined, so the peak
        is the arrays plus one column, not twice the arrays."""
        self._flush()
        if not self._chunks[0]:
            return GroupTable(*(np.zeros((0,) * k, dtype=np.int64) for k in (1, 2, 1, 3, 2)))
        width = max(chunk.shape[1] for chunk in self._chunks[1])
        pools = self._chunks[1]
        pools[:] = [c if c.shape[1] == width else np.pad(c, ((0, 0), (0, width - c.shape[1])), constant_values=-1)
                    for c in pools]  # fmt: skip
        columns, order = [], None
        for chunks in self._chunks:
            try:
                column = np.concatenate(chunks)
            except ValueError as exc:
                raise DataError(f"training groups differ in candidates per query or shots ({exc})") from None
            chunks.clear()
            order = np.argsort(column, kind="stable") if order is None else order
            columns.append(column[order])
            del column
        return GroupTable(*columns)
