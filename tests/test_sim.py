"""The simulated LVLM's required properties (issue: ICD choice matters, relevance is learnable from what the
policy sees, positive ratios spread across [0, 1]), plus determinism and answer form."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from leverplus.data.synth import NUMBER_WORDS
from leverplus.lvlm.base import Request
from leverplus.metrics import vqa_accuracy
from leverplus.pools import build_pools, rank_by_similarity


@pytest.fixture(scope="module")
def setup(world_root):
    from leverplus.config import load_settings
    from leverplus.stages.context import StageContext
    from tests.conftest import WORLD_SETTINGS

    ctx = StageContext(load_settings(overrides={**WORLD_SETTINGS, "store.uri": str(world_root)}), "test")
    train = ctx.split("train")
    queries = [r.question_id for r in train][:60]  # 60 RL-style queries
    pools = build_pools(queries, ctx.features("train"), ctx.features("train"), "stratified", 16, 0)
    return ctx, train, queries, pools


def _accuracy(ctx, record, icds) -> float:
    return vqa_accuracy(ctx.lvlm.answer([Request(record, icds)])[0].prediction, record.answers)


def test_icd_choice_matters(setup) -> None:
    ctx, train, queries, pools = setup
    best, rand = [], []
    rng = np.random.default_rng(0)
    for q in queries:
        pool = [train[i] for i in pools[q]]
        pairs = list(itertools.permutations(pool, 2))
        probs = ctx.lvlm.answer_prob([Request(train[q], p) for p in pairs])
        best.append(_accuracy(ctx, train[q], pairs[int(np.argmax(probs))]))
        rand.append(np.mean([_accuracy(ctx, train[q], pairs[i]) for i in rng.choice(len(pairs), 20, replace=False)]))
    gap = 100 * (np.mean(best) - np.mean(rand))
    assert gap >= 15, f"best 2-shot beats random by only {gap:.1f} points"


def test_relevance_is_learnable_from_the_policy_features(setup) -> None:
    # Ranking the pool by the very embeddings the policy sees (no access to the simulator) already finds far better
    # ICDs than chance: relevance is a function of those features.
    ctx, train, queries, pools = setup
    feats = ctx.features("train")
    top, rand = [], []
    rng = np.random.default_rng(1)
    for q in queries:
        order = rank_by_similarity(feats.joint([q])[0], feats.joint(pools[q]))
        top.append(ctx.lvlm.probability(train[q], (train[pools[q][order[1]]], train[pools[q][order[0]]])))
        picks = rng.choice(pools[q], size=2, replace=False)
        rand.append(ctx.lvlm.probability(train[q], (train[int(picks[0])], train[int(picks[1])])))
    assert np.mean(top) - np.mean(rand) >= 0.15


def test_positive_ratios_over_random_candidates_spread_across_the_unit_interval(setup) -> None:
    ctx, train, queries, pools = setup
    rng = np.random.default_rng(2)
    ratios = []
    for q in queries:
        seqs = [tuple(train[int(i)] for i in rng.choice(pools[q], 2, replace=False)) for _ in range(20)]
        answers = ctx.lvlm.answer([Request(train[q], s) for s in seqs])
        ratios.append(np.mean([vqa_accuracy(a.prediction, train[q].answers) > 0 for a in answers]))
    ratios = np.asarray(ratios)
    for lo, hi in ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0)):
        share = np.mean((ratios >= lo) & (ratios <= hi))
        assert share >= 0.1, f"only {share:.0%} of queries have a positive ratio in [{lo}, {hi}]"


def test_deterministic_and_answers_have_the_right_form(setup) -> None:
    ctx, train, queries, pools = setup
    requests = [Request(train[q], (train[pools[q][0]],)) for q in queries]
    first, again = ctx.lvlm.answer(requests), ctx.lvlm.answer(requests)
    assert first == again
    assert all(0 < r.answer_prob < 1 for r in first)
    assert [r.answer_prob for r in first] == pytest.approx(ctx.lvlm.answer_prob(requests))
    for request, response in zip(requests, first, strict=True):
        if request.query.answer_type == "yes/no":
            assert response.prediction in ("yes", "no")
        elif request.query.answer_type == "number":
            assert response.prediction.isdigit() or response.prediction in NUMBER_WORDS
