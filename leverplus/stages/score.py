"""`leverplus score`: one shard of a round. For each query: distinct candidate ICD sequences (sampled from the
policy, mixed with uniform random ones) -> LVLM answers -> candidate records -> the shard's JSONL, written once,
atomically, then its manifest. A shard that matches its manifest is skipped, so a retried or resumed round redoes
only missing or damaged shards (stages/shards.py)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from leverplus.errors import ConfigError
from leverplus.lvlm.base import Request
from leverplus.metrics import vqa_accuracy
from leverplus.policy import PointerSelector
from leverplus.policy.batch import make_batch
from leverplus.policy.order import prompt_order
from leverplus.pools import check_pool, check_shots
from leverplus.progress import progress
from leverplus.records import Candidate, CandidateGroup, PlannedQuery
from leverplus.stages.compat import group_facts
from leverplus.stages.context import StageContext
from leverplus.stages.layout import plan_key, round_prefix, shard_key
from leverplus.stages.shards import shard_done, write_shard

__all__ = ["candidate_sequences", "run_score"]

_MAX_TRIES = 50  # draws per wanted sequence before giving up on distinctness


def candidate_sequences(
    query: PlannedQuery,
    wanted: int,
    shots: int,
    policy_share: float,
    policy: PointerSelector | None,
    ctx: StageContext,
    seed: int,
) -> list[tuple[list[int], str]]:
    """`wanted` distinct ordered ICD sequences (question_ids) and where each came from."""
    check_shots(query.pool, shots, query.question_id)
    rng = np.random.default_rng([seed, query.question_id])
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[list[int], str]] = []
    n_policy = round(wanted * policy_share) if policy is not None else 0
    if n_policy:
        train = ctx.policy_inputs(policy, ctx.settings.data.train_split)
        batch = make_batch([query.question_id], [query.pool], train, train).to(policy.device).repeat(n_policy * 4)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))  # CPU: the same draws on any device
        picks = policy.select(batch.query, batch.pool, batch.mask, shots, greedy=False, generator=generator)
        for row in picks.tolist():
            seq = tuple(prompt_order([query.pool[i] for i in row]))
            if seq not in seen and len(out) < n_policy:
                seen.add(seq)
                out.append((list(seq), "policy"))
    for _ in range(_MAX_TRIES * wanted):
        if len(out) == wanted:
            break
        seq = tuple(int(x) for x in rng.choice(query.pool, size=shots, replace=False))
        if seq not in seen:
            seen.add(seq)
            out.append((list(seq), "random"))
    if len(out) < wanted:
        raise ConfigError(
            f"question_id {query.question_id}: its pool allows only {len(out)} distinct {shots}-shot "
            f"sequences, {wanted} wanted"
        )
    return out


def run_score(ctx: StageContext, round_id: str, shard: int, policy_uri: str | None, force: bool = False) -> str:
    key = shard_key(round_prefix(round_id), shard)
    if shard_done(ctx, key, force):
        return ctx.store.uri_for(key)
    part = ctx.plan_shard(plan_key(round_id), shard)
    queries_in_shard = part.queries
    rl = ctx.settings.rl
    policy = ctx.load_policy(policy_uri)[0] if policy_uri else None
    train, queries = ctx.split(ctx.settings.data.train_split), ctx.split(part.split)
    groups, start = [], time.monotonic()
    with progress(len(queries_in_shard), f"scoring shard {shard}") as update:
        for query in queries_in_shard:
            record = queries[query.question_id]
            check_pool(record.question_id, record.image_id, {i: train[i].image_id for i in query.pool})
            sequences = candidate_sequences(
                query,
                rl.candidates_per_query,
                rl.train_shots,
                rl.policy_fraction,
                policy,
                ctx,
                seed=ctx.settings.run.seed,
            )
            requests = [Request(record, tuple(train[i] for i in seq)) for seq, _ in sequences]
            responses = ctx.lvlm.answer(requests)
            if rl.reward_mode == "hard_plus_prob" and any(r.answer_prob is None for r in responses):
                probs = ctx.lvlm.answer_prob(requests)  # a real LVLM scores the GT answer in a second pass
                responses = [replace(r, answer_prob=p) for r, p in zip(responses, probs, strict=True)]
            candidates = []
            for (seq, source), response in zip(sequences, responses, strict=True):
                accuracy = vqa_accuracy(response.prediction, record.answers, ctx.settings.eval.metric_mode)
                candidates.append(
                    Candidate(
                        icd_ids=seq,
                        prediction=response.prediction,
                        accuracy=accuracy,
                        correct=accuracy > rl.hard_threshold,
                        answer_prob=response.answer_prob,
                        source=source,
                    )
                )  # type: ignore[arg-type]
            groups.append(
                CandidateGroup(
                    question_id=query.question_id,
                    pool=query.pool,
                    candidates=candidates,
                    round_id=round_id,
                    **{**group_facts(ctx.settings), "lvlm": ctx.lvlm.name},
                )
            )
            update(1)
    # The wall time sizes later rounds' shards (rl.shard_minutes); it is provenance, not data.
    return write_shard(ctx, key, groups, seconds=round(time.monotonic() - start, 3))
