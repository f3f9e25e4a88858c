"""One ordering convention (policy/order.py): the selector's first pick sits next to the query. InfoScore labels,
RL candidates from the policy and evaluation prompts all place items where training reads them."""

from __future__ import annotations

import numpy as np
import torch

from leverplus.policy import PointerSelector, PolicyConfig
from leverplus.policy.batch import make_batch, sequences_to_actions
from leverplus.policy.order import pick_order, prompt_order
from leverplus.stages.evaluate import _policy_selector
from leverplus.stages.plan import eval_plan_key, run_plan, sft_plan_key
from leverplus.stages.score import candidate_sequences
from leverplus.stages.sft_data import infoscore_beams


def _net(dim: int, sharp: bool = False) -> PointerSelector:
    torch.manual_seed(0)
    net = PointerSelector(PolicyConfig(feature_dim=dim)).eval()
    if sharp:  # sampling then equals greedy decoding
        with torch.no_grad():
            net.log_scale.fill_(12.0)
    return net


def test_conversions_are_inverse() -> None:
    assert prompt_order([1, 2, 3]) == [3, 2, 1] and pick_order(prompt_order([1, 2, 3])) == [1, 2, 3]


def test_eval_places_the_policys_picks_where_training_reads_them(world) -> None:
    ctx = world("eval", **{"eval.num_questions": 10})
    plan = run_plan(ctx, "eval", eval_plan_key("r"), "r")
    net = _net(ctx.features("train").dim)
    select = _policy_selector(ctx, net, "val", 4)
    for q in plan.shards[0]:
        batch = make_batch([q.question_id], [q.pool], ctx.features("val"), ctx.features("train"))
        greedy = net.select(batch.query, batch.pool, batch.mask, 4)[0].tolist()
        for k in (1, 2, 3, 4):
            prompt = select(q, k)
            assert prompt[-1] == q.pool[greedy[0]]  # the most preferred pick is next to the query
            assert sequences_to_actions([q.pool], [prompt])[0].tolist() == greedy[:k]  # training's reading


def test_rl_candidates_from_the_policy_are_stored_in_prompt_order(world) -> None:
    ctx = world("score", **{"rl.policy_fraction": 1.0})
    plan = run_plan(ctx, "eval", eval_plan_key("r"), "r")
    net = _net(ctx.features("train").dim, sharp=True)
    train = ctx.features("train")
    for q in plan.shards[0][:5]:  # eval-plan queries and pools stand in for a round's (same shapes)
        batch = make_batch([q.question_id], [q.pool], ctx.features("val"), train)
        greedy = net.select(batch.query, batch.pool, batch.mask, 2)[0].tolist()
        seqs = candidate_sequences(q, 1, 2, net, _ValQueries(ctx), seed=0)
        assert seqs[0][1] == "policy"
        assert sequences_to_actions([q.pool], [seqs[0][0]])[0].tolist() == greedy


class _ValQueries:
    """A StageContext whose train-split features answer for the eval plan's (val) query ids too."""

    def __init__(self, ctx) -> None:
        self.ctx, self.settings = ctx, ctx.settings

    def features(self, split: str):
        from leverplus.features import FeatureTable

        train, val = self.ctx.features("train"), self.ctx.features("val")
        return FeatureTable(
            train.encoder,
            "train",
            np.concatenate([train.question_ids, val.question_ids]),
            np.concatenate([train.image, val.image]),
            np.concatenate([train.question, val.question]),
        )

    def policy_inputs(self, net, split: str):
        return self.features(split)


def test_infoscore_puts_its_first_choice_next_to_the_query(world) -> None:
    """A length-2 beam prepends its second ICD: the one next to the query is a step-1 choice."""
    ctx = world("sft-data")
    plan = run_plan(ctx, "sft", sft_plan_key("r"), "r")
    train = ctx.split("train")
    for q in plan.shards[0][:10]:
        pool = [train[i] for i in q.pool]
        one = infoscore_beams(train[q.question_id], pool, ctx.lvlm, 5, 1, 8, np.random.default_rng(q.question_id))
        two = infoscore_beams(train[q.question_id], pool, ctx.lvlm, 5, 2, 8, np.random.default_rng(q.question_id))
        assert {seq[-1] for seq, _ in two} <= {seq[0] for seq, _ in one}
