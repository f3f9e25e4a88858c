"""`leverplus score`: one shard of a round. For each query: distinct candidate ICD sequences (sampled from the
policy at rl.policy_temperature, the strong heuristics and their neighbours, and uniform random ones) -> LVLM
answers -> candidate records -> the shard's JSONL, written once, atomically, then its manifest. A shard that
matches its manifest is skipped, so a retried or resumed round redoes only missing or damaged shards
(stages/shards.py)."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import torch

from leverplus.errors import ConfigError
from leverplus.heuristics import mmr, similarity_top
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

__all__ = ["candidate_sequences", "heuristic_sequences", "run_score"]

_MAX_TRIES = 50  # draws per wanted sequence before giving up on distinctness


MMR_LAMBDAS = (1.0, 0.7, 0.5, 0.3)  # the heuristic bases: similarity top-k, then MMR ever more diverse


def heuristic_sequences(
    query_vec: np.ndarray, items: np.ndarray, shots: int, rng: np.random.Generator
) -> list[list[int]]:
    """Good sequences and their neighbours, as pool indices in prompt order: similarity and MMR at each of
    MMR_LAMBDAS first, then every base with one item swapped for one of the pool's top items or with its order
    changed, in a seeded order. Distinct; as many as the pool allows."""
    bases = [prompt_order(mmr(query_vec, items, shots, lam)) for lam in MMR_LAMBDAS]
    near = similarity_top(query_vec, items, min(len(items), 2 * shots + 6))
    neighbours = [
        [*base[:i], j, *base[i + 1 :]] for base in bases for i in range(shots) for j in near if j not in base
    ] + [list(p) for base in bases for p in itertools.permutations(base) if list(p) != base]
    out, seen = [], set()
    for seq in bases + [neighbours[i] for i in rng.permutation(len(neighbours))]:
        if tuple(seq) not in seen:
            seen.add(tuple(seq))
            out.append(seq)
    return out


def candidate_sequences(
    query: PlannedQuery,
    wanted: int,
    shots: int,
    policy: PointerSelector | None,
    ctx: StageContext,
    seed: int,
) -> list[tuple[list[int], str]]:
    """`wanted` distinct ordered ICD sequences (question_ids) and where each came from: rl.policy_fraction from the
    policy, rl.heuristic_fraction from heuristic_sequences, the rest uniform random."""
    rl = ctx.settings.rl
    check_shots(query.pool, shots, query.question_id)
    rng = np.random.default_rng([seed, query.question_id])
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[list[int], str]] = []
    n_policy = round(wanted * rl.policy_fraction) if policy is not None else 0
    if n_policy:
        train = ctx.policy_inputs(policy, ctx.settings.data.train_split)
        batch = make_batch([query.question_id], [query.pool], train, train).to(policy.device)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))  # CPU: the same draws on any device
        picks = policy.select(
            batch.query,
            batch.pool,
            batch.mask,
            shots,
            greedy=False,
            generator=generator,
            temperature=rl.policy_temperature,
            draws=n_policy * 4,
        )
        for row in picks.tolist():
            seq = tuple(prompt_order([query.pool[i] for i in row]))
            if seq not in seen and len(out) < n_policy:
                seen.add(seq)
                out.append((list(seq), "policy"))
    n_heuristic = len(out) + round(wanted * rl.heuristic_fraction)
    if n_heuristic > len(out):
        features = ctx.features(ctx.settings.data.train_split)
        query_vec, items = features.joint([query.question_id])[0], features.joint(query.pool)
        for row in heuristic_sequences(query_vec, items, shots, rng):
            seq = tuple(query.pool[i] for i in row)
            if seq not in seen and len(out) < n_heuristic:
                seen.add(seq)
                out.append((list(seq), "heuristic"))
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
    per_query = rl.candidates_per_query
    with progress(len(queries_in_shard) * per_query, f"scoring shard {shard}", unit="candidates") as update:
        for query in queries_in_shard:
            record = queries[query.question_id]
            check_pool(record.question_id, record.image_id, {i: train[i].image_id for i in query.pool})
            sequences = candidate_sequences(
                query,
                rl.candidates_per_query,
                rl.train_shots,
                policy,
                ctx,
                seed=ctx.settings.run.seed,
            )
            requests = [Request(record, tuple(train[i] for i in seq)) for seq, _ in sequences]
            responses = ctx.lvlm.answer(requests)
            if rl.reward_mode in ("hard_plus_prob", "prob") and any(r.answer_prob is None for r in responses):
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
            update(per_query)
    # The wall time sizes later rounds' shards (rl.shard_minutes); it is provenance, not data.
    return write_shard(ctx, key, groups, seconds=round(time.monotonic() - start, 3))
