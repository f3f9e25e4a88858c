"""`leverplus plan`: choose queries, build their pools, split them into shards, write plan.json, and print the shard
ids as a JSON list (what Argo's withParam fans out over).

  rl    train queries never planned in an earlier round (accepted or rejected), as many as the target number of
        new balanced queries needs at the acceptance rate seen so far
  sft   a seeded sample of train anchors for InfoScore beam search
  eval  the eval split's first N questions by question_id (or a seeded sample)

Re-running a plan that exists reuses it, so a retried step fans out over the same shards.
"""

from __future__ import annotations

import math

import numpy as np

from leverplus.catalog import Catalog
from leverplus.errors import ConfigError, ConflictError
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.pools import build_pools
from leverplus.records import Plan, PlanIndex, PlannedQuery, PlanShard
from leverplus.stages.context import StageContext
from leverplus.stages.layout import eval_prefix, plan_index_key, plan_key, plan_part_key, queries_key, sft_prefix

__all__ = ["eval_plan_key", "plan_key", "run_plan", "scored_round_stats", "sft_plan_key", "write_plan"]


def sft_plan_key(run_id: str) -> str:
    return f"{sft_prefix(run_id)}/plan.json"


def eval_plan_key(run_id: str) -> str:
    return f"{eval_prefix(run_id)}/plan.json"


def scored_round_stats(ctx: StageContext, exclude: str | None = None) -> tuple[set[int], int, int]:
    """(question_ids planned by other rounds, queries scored in filtered rounds, queries accepted in them)."""
    catalog = Catalog(ctx.store)
    planned = catalog.planned_ids(exclude=exclude)
    scored, accepted = catalog.acceptance(exclude=exclude)
    return planned, scored, accepted


def _rl_queries(ctx: StageContext, round_id: str) -> list[int]:
    rl = ctx.settings.rl
    planned, scored, accepted = scored_round_stats(ctx, exclude=round_id)
    rate = accepted / scored if scored else rl.prior_acceptance_rate
    wanted = math.ceil(rl.target_new_queries / max(rate, 0.02))
    fresh = [q for q in ctx.features("train").question_ids.tolist() if q not in planned]
    if not fresh:
        raise ConfigError(
            "plan: every train question has been scored by an earlier round; nothing left to plan (a synthetic "
            "world grows with `leverplus data synth --add N --out <data root>`)"
        )
    # Seeded by the round's ordinal: the rounds before it, plus one. (Counting folders alone made the draw depend on
    # whether this round's folder existed yet, i.e. on whether its settings were recorded before or after planning.)
    ordinal = len({k.split("/")[1] for k in ctx.store.list("rounds/")} - {round_id}) + 1
    rng = np.random.default_rng([ctx.settings.run.seed, ordinal])
    chosen = sorted(rng.choice(fresh, size=min(wanted, len(fresh)), replace=False).tolist())
    ctx.log.info("rl plan sized", acceptance_rate=round(rate, 3), wanted=wanted, fresh=len(fresh), chosen=len(chosen))
    return chosen


def _choose(ctx: StageContext, kind: str, round_or_run: str) -> tuple[str, list[int]]:
    s = ctx.settings
    if kind == "rl":
        return s.data.train_split, _rl_queries(ctx, round_or_run)
    if kind == "sft":
        ids = ctx.features(s.data.train_split).question_ids
        rng = np.random.default_rng([s.run.seed, 17])
        return s.data.train_split, sorted(rng.choice(ids, size=min(s.sft.anchors, len(ids)), replace=False).tolist())
    ids = ctx.features(s.data.eval_split).question_ids
    if s.eval.num_questions > len(ids):
        raise ConfigError(
            f"eval.num_questions {s.eval.num_questions} exceeds the {len(ids)} questions of the eval split"
        )
    if s.eval.selection == "first":
        return s.data.eval_split, sorted(ids.tolist())[: s.eval.num_questions]
    rng = np.random.default_rng([s.eval.seed, 23])
    return s.data.eval_split, sorted(rng.choice(ids, size=s.eval.num_questions, replace=False).tolist())


def _shard_size(ctx: StageContext, round_id: str) -> int:
    """Queries per scoring shard: rl.shard_size, or as many as fill rl.shard_minutes at the measured pace."""
    rl = ctx.settings.rl
    per_query = Catalog(ctx.store).seconds_per_query(exclude=round_id) if rl.shard_minutes else None
    if rl.shard_minutes is None or per_query is None:
        return rl.shard_size
    size = max(1, int(rl.shard_minutes * 60 / max(per_query, 1e-6)))
    ctx.log.info("shards sized by time", minutes=rl.shard_minutes, seconds_per_query=round(per_query, 3), size=size)
    return size


def write_plan(ctx: StageContext, key: str, plan: Plan, round_or_run: str) -> None:
    """The plan; each shard's part of it (what its fan-out pod reads: a 443k-query plan is ~200 MB of JSON) and
    their index, written last; for an RL round, its question ids by shard (queries.json): what later rounds exclude
    and how many shards `filter` joins, without parsing the pools."""
    ctx.store.delete(plan_index_key(key))  # a re-plan: until the new index lands, readers use plan.json itself
    parts = [ctx.put_json(plan_part_key(key, i), PlanShard.of(plan, i)) for i in plan.shard_ids()]
    plan_sha256, queries_sha256 = ctx.put_json(key, plan), None
    if plan.kind == "rl":
        queries_sha256 = ctx.put_json(queries_key(round_or_run), plan.question_ids_by_shard())
    ctx.put_json(plan_index_key(key), PlanIndex(plan_sha256=plan_sha256, shards=parts, queries_sha256=queries_sha256))


def run_plan(ctx: StageContext, kind: str, key: str, round_or_run: str, force: bool = False) -> Plan:
    if ctx.store.exists(key) and not force:
        plan = ctx.read_plan(key)
        if plan.settings_hash != ctx.settings_hash:  # its shards would be scored under settings it was not made with
            raise ConflictError(
                f"{ctx.store.uri_for(key)} was made with settings {plan.settings_hash[:12]}, this command's are "
                f"{ctx.settings_hash[:12]}: use a new round/run id, or --force to re-plan"
            )
        ctx.log.info("plan exists, reusing it", uri=ctx.store.uri_for(key), shards=len(plan.shards))
        return plan
    s = ctx.settings
    split, query_ids = _choose(ctx, kind, round_or_run)
    image_of = ctx.image_of(split)
    pools = build_pools(
        query_ids,
        ctx.features(split),
        ctx.features(s.data.train_split),
        s.pool.sampler,
        s.pool.size,
        s.pool.seed,
        image_of=image_of,
        diversity=s.pool.diversity_share,
    )
    shard_size = _shard_size(ctx, round_or_run) if kind == "rl" else s.rl.shard_size
    planned = [PlannedQuery(question_id=q, pool=pools[q]) for q in query_ids]
    plan = Plan(
        kind=kind,  # type: ignore[arg-type]
        split=split,
        sampler=s.pool.sampler,
        pool_size=s.pool.size,
        encoder=s.features.encoder,
        shards=[planned[i : i + shard_size] for i in range(0, len(planned), shard_size)],
        settings_hash=ctx.settings_hash,
        prompt_hash=PROMPT_HASH,
    )
    write_plan(ctx, key, plan, round_or_run)
    ctx.log.info("plan written", uri=ctx.store.uri_for(key), kind=kind, queries=len(planned), shards=len(plan.shards))
    return plan
