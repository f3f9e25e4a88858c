"""The non-learned selectors the report compares the policy with: similarity, MMR and global retrieval."""

from __future__ import annotations

import numpy as np

from leverplus.features import FeatureTable
from leverplus.heuristics import mmr, retrieve, similarity_top


def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def _plain_mmr(query: np.ndarray, items: np.ndarray, k: int, lam: float) -> list[int]:
    """MMR as its definition reads, one item at a time (the vectorised code must agree)."""
    picks: list[int] = []
    while len(picks) < k:
        best, best_score = -1, -np.inf
        for i in range(len(items)):
            if i in picks:
                continue
            redundancy = max((float(items[i] @ items[j]) for j in picks), default=0.0)
            score = lam * float(items[i] @ query) - (1 - lam) * redundancy
            if score > best_score:
                best, best_score = i, score
        picks.append(best)
    return picks


def test_mmr_matches_its_definition_and_is_similarity_at_lambda_one() -> None:
    rng = np.random.default_rng(0)
    items, query = _unit(rng.random((40, 6))), _unit(rng.random((1, 6)))[0]
    for lam in (0.0, 0.3, 0.5, 0.9):
        assert mmr(query, items, 5, lam) == _plain_mmr(query, items, 5, lam)
    assert mmr(query, items, 5, 1.0) == similarity_top(query, items, 5)


def test_mmr_skips_a_near_duplicate_that_similarity_takes() -> None:
    query = _unit(np.array([[1.0, 0.0, 0.0]]))[0]
    items = _unit(np.array([[1.0, 0.1, 0.0], [1.0, 0.11, 0.0], [0.7, 0.0, 0.7]]))  # 1 duplicates 0
    assert similarity_top(query, items, 2) == [0, 1]
    assert mmr(query, items, 2, 0.5) == [0, 2]


def test_retrieval_is_the_global_top_k_without_the_querys_image() -> None:
    rng = np.random.default_rng(1)
    table = FeatureTable(
        "simple", "train", np.arange(100, 300, dtype=np.int64), _unit(rng.random((200, 5))), _unit(rng.random((200, 7)))
    )
    image_of = {int(q): int(q) // 2 for q in table.question_ids}  # two questions per image
    top = retrieve([120, 255], table, table, 4, image_of)
    for q, picks in top.items():
        sims = table.joint() @ table.joint([q])[0]
        ranked = [
            int(table.question_ids[i]) for i in np.argsort(-sims) if image_of[int(table.question_ids[i])] != image_of[q]
        ]
        assert picks == ranked[:4]  # most similar first, its image partner and itself excluded


def test_rl_candidates_mix_the_policy_the_heuristics_and_their_neighbours_and_random(world) -> None:
    from collections import Counter

    from leverplus.stages.layout import plan_key
    from leverplus.stages.plan import run_plan
    from leverplus.stages.score import MMR_LAMBDAS, candidate_sequences
    from tests.test_order import _net

    ctx = world("score", **{"rl.policy_fraction": 0.25, "rl.heuristic_fraction": 0.5, "pool.sampler": "retrieved"})
    plan = run_plan(ctx, "rl", plan_key("r"), "r")
    feats, net = ctx.features("train"), _net(ctx.features("train").dim)
    for q in plan.shards[0][:5]:
        seqs = candidate_sequences(q, 20, 2, net, ctx, seed=0)
        assert Counter(source for _, source in seqs) == {"policy": 5, "heuristic": 10, "random": 5}
        assert len({tuple(s) for s, _ in seqs}) == 20
        query, items = feats.joint([q.question_id])[0], feats.joint(q.pool)
        bases = [[q.pool[i] for i in mmr(query, items, 2, lam)][::-1] for lam in MMR_LAMBDAS]  # prompt order
        heuristic = [s for s, source in seqs if source == "heuristic"]
        assert heuristic[0] == bases[0]  # similarity top-2, the closest next to the query
        assert all(any(len(set(s) ^ set(b)) <= 2 for b in bases) for s in heuristic)  # one swap/reorder away
        assert seqs == candidate_sequences(q, 20, 2, net, ctx, seed=0)  # seeded


def test_policy_samples_at_a_temperature() -> None:
    import torch

    from tests.test_order import _net

    net = _net(12)
    torch.manual_seed(1)
    query, pool = torch.nn.functional.normalize(torch.randn(64, 12), dim=-1), torch.randn(64, 10, 12)
    mask = torch.ones(64, 10, dtype=torch.bool)
    greedy = net.select(query, pool, mask, 3)
    cold = net.select(query, pool, mask, 3, greedy=False, generator=torch.Generator().manual_seed(0), temperature=1e-4)
    assert torch.equal(cold, greedy)
    warm = net.select(query, pool, mask, 3, greedy=False, generator=torch.Generator().manual_seed(0))
    plain = net.select(query, pool, mask, 3, greedy=False, generator=torch.Generator().manual_seed(0), temperature=1.0)
    assert torch.equal(warm, plain) and not torch.equal(warm, greedy)
