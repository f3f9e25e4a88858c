"""RL works: from a deliberately weak SFT policy, a data round, RCE and then GRPO raise held-out accuracy clearly.

Held-out accuracy is measured as the simulator's expected accuracy (its probability of answering right) of the
greedy 2-shot choice on evaluation questions the policy never trained on: noise-free, so a small test can show it.
"""

from __future__ import annotations

import numpy as np
import torch

from leverplus.lvlm.base import Request
from leverplus.policy import PointerSelector, PolicyConfig, load_policy, save_policy
from leverplus.policy.batch import make_batch
from leverplus.policy.train import SFTExample, train_sft
from leverplus.stages.filter import run_filter
from leverplus.stages.layout import plan_key
from leverplus.stages.plan import eval_plan_key, run_plan
from leverplus.stages.score import run_score
from leverplus.stages.train import run_grpo, run_rce

SMALL = {  # shrunk so the whole test takes well under a minute on 2 cores
    "rl.target_new_queries": 120,
    "rl.prior_acceptance_rate": 0.2,  # -> 600 of the 900 train questions scored
    "rl.rce_epochs": 10,  # lab 5 epochs over thousands of queries; ~120 here
    "rl.rce_lr": 1e-3,  # lab 1e-4
    "rl.grpo_epochs": 8,  # lab 30
    "rl.grpo_lr": 3e-4,  # lab 5e-6, for a far longer run
    "eval.num_questions": 150,
}


def _held_out_accuracy(ctx, ckpt: str) -> float:
    net, _ = load_policy(ctx.checkpoint_store(ckpt))
    plan = ctx.read_plan(eval_plan_key("rl-test"))
    queries = [q for shard in plan.shards for q in shard]
    val, train = ctx.split("val"), ctx.split("train")
    batch = make_batch(
        [q.question_id for q in queries], [q.pool for q in queries], ctx.features("val"), ctx.features("train")
    )
    picks = net.select(batch.query, batch.pool, batch.mask, 2)
    requests = [
        Request(val[q.question_id], tuple(train[q.pool[i]] for i in row))
        for q, row in zip(queries, picks.tolist(), strict=True)
    ]
    return float(np.mean(ctx.lvlm.answer_prob(requests)))


def test_rce_then_grpo_improve_a_weak_sft_policy(world) -> None:
    ctx = world("rl", **SMALL)
    # A deliberately weak "SFT" policy: one epoch of imitation of random ICD pairs.
    train = ctx.features("train")
    rng = np.random.default_rng(0)
    anchors = [int(q) for q in rng.choice(train.question_ids, 40, replace=False)]
    pools = {
        a: [int(x) for x in rng.choice(train.question_ids[train.question_ids != a], 16, replace=False)] for a in anchors
    }
    examples = [SFTExample(a, pools[a], [int(x) for x in rng.choice(pools[a], 2, replace=False)]) for a in anchors]
    torch.manual_seed(0)
    weak = train_sft(
        PointerSelector(PolicyConfig(feature_dim=train.dim)),
        examples,
        train,
        train,
        epochs=1,
        lr=1e-3,
        batch_size=16,
        grad_clip=1.0,
        seed=0,
        sink=lambda step, m: None,
    )
    save_policy(weak, ctx.store, "runs/rl-test/checkpoints/sft", {"encoder": "simple"})

    plan = run_plan(ctx, "rl", plan_key("round-rl"), "round-rl")
    for shard in plan.shard_ids():
        run_score(ctx, "round-rl", shard, "runs/rl-test/checkpoints/sft")
    stats = run_filter(ctx, "round-rl")
    assert stats["added_queries"] >= 40
    run_rce(ctx, "rl-test", "runs/rl-test/checkpoints/sft")
    run_grpo(ctx, "rl-test", "runs/rl-test/checkpoints/rce")

    run_plan(ctx, "eval", eval_plan_key("rl-test"), "rl-test")
    acc = {stage: _held_out_accuracy(ctx, f"runs/rl-test/checkpoints/{stage}") for stage in ("sft", "rce", "grpo")}
    assert acc["rce"] > acc["sft"] + 0.05, acc
    assert acc["grpo"] > acc["sft"] + 0.08, acc
    assert acc["grpo"] >= acc["rce"] - 0.01, acc  # GRPO keeps (or adds to) what RCE gained

    before = load_policy(ctx.checkpoint_store("runs/rl-test/checkpoints/rce"))[0].state_dict()
    after = load_policy(ctx.checkpoint_store("runs/rl-test/checkpoints/grpo"))[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # GRPO actually trained
    assert ctx.store.exists("runs/rl-test/checkpoints/grpo/epoch-008/model.safetensors")  # a checkpoint per epoch
