"""`leverplus eval`: one shard of evaluation questions, answered by every system at every shot count with ICDs
from the same per-query pools.

  policy      the trained selector (GRPO output), greedy; its first k picks, the first next to the query
  policy-seedS the same training with seed S (rl.seeds > 1): the seed spread
  rce         the RCE selector GRPO started from, greedy
  sft         the starting selector, greedy
  random      uniform from the pool (seeded per question and shot count)
  similarity  the pool's top-k by embedding cosine, the closest next to the query
  mmr         the pool's k by maximal marginal relevance (eval.mmr_lambda), the first pick next to the query
  retrieval   the top-k of the whole train split by embedding cosine (no pool): what a practitioner retrieves

Every prompt built from picks goes through policy/order.py, the convention training uses.
  zero-shot   no ICDs (shot count 0)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leverplus.heuristics import mmr, retrieve
from leverplus.lvlm.base import Request
from leverplus.metrics import vqa_accuracy
from leverplus.policy import PointerSelector
from leverplus.policy.batch import make_batch
from leverplus.policy.order import prompt_order
from leverplus.pools import check_pool, check_shots
from leverplus.progress import progress
from leverplus.records import EvalRecord, PlannedQuery
from leverplus.stages.context import StageContext
from leverplus.stages.layout import checkpoint_prefix, eval_prefix, shard_key
from leverplus.stages.shards import shard_done, write_shard

__all__ = ["SYSTEMS", "run_eval"]

SYSTEMS = ("policy", "rce", "sft", "random", "similarity", "mmr", "retrieval", "zero-shot")
Selector = Callable[[PlannedQuery, int], list[int]]


def _policy_selector(ctx: StageContext, net: PointerSelector, split: str, max_shots: int) -> Selector:
    queries, train = ctx.policy_inputs(net, split), ctx.policy_inputs(net, ctx.settings.data.train_split)
    decoded: dict[int, list[int]] = {}  # the current question's greedy picks at max_shots

    def select(q: PlannedQuery, k: int) -> list[int]:
        # Greedy decoding is sequential, so the k-shot choice is the first k picks of the max_shots choice:
        # decode once per question instead of once per shot count.
        if q.question_id not in decoded:
            decoded.clear()
            batch = make_batch([q.question_id], [q.pool], queries, train).to(net.device)
            picks = net.select(batch.query, batch.pool, batch.mask, max_shots, greedy=True)[0]
            decoded[q.question_id] = [q.pool[i] for i in picks.tolist()]
        return prompt_order(decoded[q.question_id][:k])

    return select


def _pool_selector(ctx: StageContext, split: str, lam: float) -> Selector:
    """MMR within the pool at λ; λ = 1 is similarity top-k."""
    queries, train = ctx.features(split), ctx.features(ctx.settings.data.train_split)

    def select(q: PlannedQuery, k: int) -> list[int]:
        picks = mmr(queries.joint([q.question_id])[0], train.joint(q.pool), k, lam)
        return prompt_order([q.pool[i] for i in picks])

    return select


def _retrieval_selector(ctx: StageContext, split: str, questions: list[PlannedQuery], longest: int) -> Selector:
    """Global top-k, retrieved once per shard for the longest shot count (the k-shot choice is its first k)."""
    train_split = ctx.settings.data.train_split
    ids = [q.question_id for q in questions]
    top = retrieve(ids, ctx.features(split), ctx.features(train_split), longest, ctx.image_of(split)) if longest else {}

    def select(q: PlannedQuery, k: int) -> list[int]:
        return prompt_order(top[q.question_id][:k])

    return select


def _random_selector(seed: int) -> Selector:
    def select(q: PlannedQuery, k: int) -> list[int]:
        rng = np.random.default_rng([seed, q.question_id, k])
        return [int(x) for x in rng.choice(q.pool, size=k, replace=False)]

    return select


def run_eval(
    ctx: StageContext,
    run_id: str,
    shard: int,
    policy_uri: str,
    sft_uri: str,
    rce_uri: str | None = None,
    force: bool = False,
) -> str:
    prefix = eval_prefix(run_id)
    key = shard_key(prefix, shard)
    if shard_done(ctx, key, force):
        return ctx.store.uri_for(key)
    part = ctx.plan_shard(f"{prefix}/plan.json", shard)
    questions = part.queries
    s = ctx.settings
    shots = [k for k in s.eval.shots if k > 0]
    longest = max(shots, default=0)
    # Extra training seeds (rl.seeds) are evaluated too: the report's seed spread.
    seeds = {f"policy-seed{k}": checkpoint_prefix(run_id, "grpo", k) for k in range(1, s.rl.seeds)}
    checkpoints = {"policy": policy_uri, **seeds, "rce": rce_uri, "sft": sft_uri}
    selectors: dict[str, Selector] = {}
    towers = None  # clip-lora: every checkpoint reads one copy of the base CLIP, each through its own adapters
    for name, uri in checkpoints.items():
        if uri:
            net = ctx.load_policy(uri, share=towers)[0]
            towers = towers or net.towers
            selectors[name] = _policy_selector(ctx, net, part.split, longest)
    selectors |= {
        "random": _random_selector(s.eval.seed),
        "similarity": _pool_selector(ctx, part.split, 1.0),
        "mmr": _pool_selector(ctx, part.split, s.eval.mmr_lambda),
        "retrieval": _retrieval_selector(ctx, part.split, questions, longest),
    }
    queries, train = ctx.split(part.split), ctx.split(s.data.train_split)
    records: list[EvalRecord] = []
    with progress(len(questions), f"evaluating shard {shard}") as update:
        for q in questions:
            if shots:
                check_shots(q.pool, max(shots), q.question_id)
            check_pool(q.question_id, queries[q.question_id].image_id, {i: train[i].image_id for i in q.pool})
            jobs = [("zero-shot", 0, [])] + [(name, k, pick(q, k)) for name, pick in selectors.items() for k in shots]
            record = queries[q.question_id]
            responses = ctx.lvlm.answer([Request(record, tuple(train[i] for i in ids)) for _, _, ids in jobs])
            for (system, k, ids), response in zip(jobs, responses, strict=True):
                records.append(
                    EvalRecord(
                        question_id=q.question_id,
                        system=system,
                        shots=k,
                        icd_ids=ids,
                        prediction=response.prediction,
                        accuracy=vqa_accuracy(response.prediction, record.answers, s.eval.metric_mode),
                    )
                )
            update(1)
    return write_shard(ctx, key, records)
