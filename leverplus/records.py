"""Pipeline records that cross process boundaries: plans, candidate groups, manifests.

Candidate records store raw facts (prediction, VQA accuracy, correct flag, optional answer probability); rewards
are computed from them at training time by a named mode, so changing the mode never needs rescoring.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Candidate",
    "CandidateGroup",
    "EvalRecord",
    "Manifest",
    "Plan",
    "PlanIndex",
    "PlanShard",
    "PlannedQuery",
    "canonical_json",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlannedQuery(_Record):
    question_id: int
    pool: list[int]  # ICD question_ids from the train split, never the query itself


class Plan(_Record):
    """What a fan-out will do: queries with their pools, split into shards (one pod each under Argo)."""

    kind: Literal["rl", "sft", "eval"]
    split: str
    sampler: str
    pool_size: int
    encoder: str
    shards: list[list[PlannedQuery]]
    settings_hash: str
    prompt_hash: str

    def shard_ids(self) -> list[int]:
        return list(range(len(self.shards)))

    def question_ids_by_shard(self) -> list[list[int]]:
        return [[q.question_id for q in shard] for shard in self.shards]

    @model_validator(mode="after")
    def _queries_once_and_never_in_their_own_pool(self) -> Plan:
        _check_queries([q for shard in self.shards for q in shard])
        return self


def _check_queries(queries: list[PlannedQuery]) -> None:
    seen: set[int] = set()
    for q in queries:
        if q.question_id in seen:
            raise ValueError(f"question_id {q.question_id} is planned twice")
        if q.question_id in q.pool:
            raise ValueError(f"question_id {q.question_id} is in its own pool (its answer would leak)")
        seen.add(q.question_id)


class PlanShard(_Record):
    """One shard of a plan with the plan's header: what a fan-out pod reads instead of the whole plan (a 443k-query
    plan is ~200 MB of JSON; a shard is a few hundred KB)."""

    kind: Literal["rl", "sft", "eval"]
    split: str
    sampler: str
    pool_size: int
    encoder: str
    settings_hash: str
    prompt_hash: str
    shard: int
    shards: int
    queries: list[PlannedQuery]

    @classmethod
    def of(cls, plan: Plan, shard: int) -> PlanShard:
        header = plan.model_dump(exclude={"shards"})
        return cls(**header, shard=shard, shards=len(plan.shards), queries=plan.shards[shard])

    @model_validator(mode="after")
    def _queries_once_and_never_in_their_own_pool(self) -> PlanShard:
        _check_queries(self.queries)
        return self


class PlanIndex(_Record):
    """Written after the plan and its shard files: the sha256 of each shard file. Present only while the plan and
    its shard files agree (a re-plan deletes it first), so a reader without it falls back to the plan itself."""

    plan_sha256: str
    shards: list[str]
    queries_sha256: str | None = None  # an RL round's queries.json; None in indexes written before it was recorded


class Candidate(_Record):
    icd_ids: list[int]  # prompt order
    prediction: str
    accuracy: float  # official VQA accuracy in [0, 1]
    correct: bool  # accuracy > rl.hard_threshold
    answer_prob: float | None = None
    source: Literal["policy", "heuristic", "random"]


class CandidateGroup(_Record):
    """One RL query's scored candidates: the unit of the balanced filter and of RCE/GRPO. It records what its
    rewards mean (prompt, LVLM id with the sim version, threshold, metric, group size), so that groups scored under
    other settings cannot be merged or trained on together (stages/compat.py). Groups written before these fields
    existed read as None, which matches no settings."""

    question_id: int
    pool: list[int]
    candidates: list[Candidate]
    round_id: str
    prompt_hash: str
    lvlm: str
    hard_threshold: float | None = None
    metric_mode: str | None = None
    candidates_per_query: int | None = None

    @property
    def positive_ratio(self) -> float:
        return sum(c.correct for c in self.candidates) / len(self.candidates)


class EvalRecord(_Record):
    """One evaluation question answered by one system at one shot count."""

    question_id: int
    system: str
    shots: int
    icd_ids: list[int]
    prediction: str
    accuracy: float


class Manifest(_Record):
    """Provenance of a published object: what made it, from what, and checksums of what it wrote."""

    kind: str
    settings_hash: str
    prompt_hash: str
    code_version: str
    inputs: dict[str, str] = Field(default_factory=dict)  # name -> URI
    outputs: dict[str, str] = Field(default_factory=dict)  # key -> sha256
    stats: dict[str, Any] = Field(default_factory=dict)


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: the same data always gives the same bytes."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
