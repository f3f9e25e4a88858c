"""Scored RL rounds of random groups of `score`'s exact shape (20 candidates of 2 ICDs, a 64-item pool, the facts
of the current settings), written without an LVLM: the data behind the filter and loader benchmarks at VQAv2 scale
and behind the tests of the balanced set's format. Each group's rewards are random, so about a third of a round
falls in the default balance band.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from leverplus.lvlm import lvlm_id
from leverplus.records import Plan, PlannedQuery
from leverplus.stages.compat import group_facts
from leverplus.stages.context import StageContext
from leverplus.stages.layout import plan_key, round_prefix, shard_key
from leverplus.stages.plan import write_plan
from leverplus.stages.shards import write_shard

__all__ = ["random_group", "write_scored_round"]

_POOL_IDS = range(10_000_000, 10_500_000)


def random_group(
    rng: random.Random, question_id: int, round_id: str, facts: dict[str, Any], balanced: bool = False
) -> dict[str, Any]:
    """One group as `score` writes it (a dict that serialises to the same canonical line as a CandidateGroup);
    `balanced`: 8 to 12 positives of 20, inside the default band."""
    pool = rng.sample(_POOL_IDS, 64)
    positives = rng.randint(8, 12) if balanced else rng.randint(0, 20)
    candidates = [
        {
            "icd_ids": rng.sample(pool, 2),
            "prediction": rng.choice(["yes", "no", "2", "red"]),
            "accuracy": 1.0 if i < positives else 0.0,
            "correct": i < positives,
            "answer_prob": round(rng.random(), 6),
            "source": "policy" if i % 2 else "random",
        }
        for i in range(20)
    ]
    return {"question_id": question_id, "pool": pool, "candidates": candidates, "round_id": round_id, **facts}


def write_scored_round(
    ctx: StageContext, round_id: str, question_ids: Sequence[int], shard_size: int, balanced: bool = False
) -> None:
    """A planned and scored round: its plan (the groups' pools) and one verified shard per `shard_size` queries."""
    rng = random.Random(f"{round_id}:{question_ids[0] if question_ids else 0}")
    facts = {**group_facts(ctx.settings), "lvlm": lvlm_id(ctx.settings.lvlm)}
    groups = [random_group(rng, q, round_id, facts, balanced) for q in question_ids]
    planned = [PlannedQuery(question_id=g["question_id"], pool=g["pool"]) for g in groups]
    shards = [planned[i : i + shard_size] for i in range(0, len(planned), shard_size)]
    plan = Plan(kind="rl", split="train", sampler="stratified", pool_size=64, encoder=ctx.settings.features.encoder,
                shards=shards, settings_hash=ctx.settings_hash, prompt_hash=facts["prompt_hash"])  # fmt: skip
    write_plan(ctx, plan_key(round_id), plan, round_id)
    for index in plan.shard_ids():
        rows = groups[index * shard_size : (index + 1) * shard_size]
        write_shard(ctx, shard_key(round_prefix(round_id), index), rows)
