"""Losses against DESIGN §3 and hand-computed values; vectorised code against plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leverplus.policy.losses import group_advantages, grpo_diagnostics, grpo_loss, rce_loss


def test_group_advantages_design_vector() -> None:
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.0]))
    expected = torch.tensor([1.305310, -0.783186, 0.261062, -0.783186])
    assert torch.allclose(advantages, expected, atol=1e-6)


def test_group_advantages_batched_equals_loop() -> None:
    rewards = torch.rand(5, 20, generator=torch.Generator().manual_seed(0))
    batched = group_advantages(rewards)
    for row in range(5):
        r = rewards[row].tolist()
        mean = sum(r) / len(r)
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))  # sample std
        assert batched[row].tolist() == pytest.approx([(x - mean) / (std + 1e-4) for x in r], rel=1e-5)


def test_equal_rewards_give_zero_advantage() -> None:
    assert torch.equal(group_advantages(torch.ones(6)), torch.zeros(6))


def test_rce_loss_hand_computed() -> None:
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    loss = rce_loss(logp, torch.tensor([1.0, 0.0]), tau=1.0)
    w = math.exp(1) / (math.exp(1) + 1)  # softmax([1, 0]) = [0.7311, 0.2689]
    assert float(loss.detach()) == pytest.approx(w * 1 + (1 - w) * 2, rel=1e-6)
    loss.backward()
    assert logp.grad.tolist() == pytest.approx([-w, -(1 - w)], rel=1e-6)  # weights are constants


def test_rce_temperature_sharpens_towards_the_best() -> None:
    logp = torch.tensor([[-1.0, -1.0, -1.0]])
    rewards = torch.tensor([[2.0, 1.0, 0.0]])
    hot, cold = rce_loss(logp, rewards, 10.0), rce_loss(logp, rewards, 0.1)
    assert float(hot) == pytest.approx(1.0) and float(cold) == pytest.approx(1.0)  # equal logp: same loss
    hot_logp, cold_logp = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    rce_loss(hot_logp, rewards, 10.0).backward()
    rce_loss(cold_logp, rewards, 0.1).backward()
    assert hot_logp.grad[0].tolist() == pytest.approx([-0.367, -0.332, -0.301], abs=1e-3)  # nearly uniform
    assert cold_logp.grad[0, 0] < -0.99  # nearly all weight on the best candidate


def test_grpo_loss_hand_computed() -> None:
    logp, old, ref = torch.tensor([0.1, -0.3]), torch.zeros(2), torch.zeros(2)
    adv = torch.tensor([1.0, -1.0])
    # candidate 0: ratio e^0.1 = 1.10517 inside the clip -> -1.10517; candidate 1: ratio e^-0.3 = 0.74082 is
    # clipped to 0.8 and min(-0.74082, -0.8) = -0.8 -> +0.8. KL k3: e^-0.1 + 0.1 - 1, e^0.3 - 0.3 - 1.
    kl = [math.exp(-0.1) + 0.1 - 1, math.exp(0.3) - 0.3 - 1]
    expected = ((-math.exp(0.1) + 0.1 * kl[0]) + (0.8 + 0.1 * kl[1])) / 2
    assert float(grpo_loss(logp, old, ref, adv, clip_eps=0.2, beta=0.1)) == pytest.approx(expected, rel=1e-6)


def test_grpo_loss_equals_a_plain_loop() -> None:
    g = torch.Generator().manual_seed(1)
    logp, old, ref, adv = (torch.randn(3, 8, generator=g) * 0.3 for _ in range(4))
    total = 0.0
    for i in range(3):
        for j in range(8):
            ratio = math.exp(logp[i, j] - old[i, j])
            a = float(adv[i, j])
            pg = -min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
            d = float(ref[i, j] - logp[i, j])
            total += pg + 0.1 * (math.exp(d) - d - 1)
    assert float(grpo_loss(logp, old, ref, adv)) == pytest.approx(total / 24, rel=1e-5)


def test_grpo_at_the_start_is_minus_mean_advantage_and_kl_zero() -> None:
    logp = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    adv = group_advantages(torch.tensor([1.0, 0.0, 0.5]))
    loss = grpo_loss(logp, logp.detach(), logp.detach(), adv)
    assert float(loss.detach()) == pytest.approx(-float(adv.mean()), abs=1e-7)  # ~0: monitor reward, not loss
    loss.backward()
    assert logp.grad.tolist() == pytest.approx((-adv / 3).tolist(), rel=1e-5)


def test_grpo_diagnostics() -> None:
    logp = torch.tensor([[0.0, 0.5], [0.0, 0.0]])
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    d = grpo_diagnostics(logp, torch.zeros(2, 2), torch.zeros(2, 2), rewards)
    assert d["frac_reward_zero_std"] == 0.5
    assert d["clip_frac"] == 0.25  # only e^0.5 = 1.65 is outside [0.8, 1.2]
    assert d["k3_on_candidates"] == pytest.approx((math.exp(-0.5) + 0.5 - 1) / 4)
    assert (d["ratio_min"], d["ratio_max"]) == pytest.approx((1.0, math.exp(0.5)))
    # group 1: weights softmax(0, .5) on rewards (1, 0); group 2: rewards all 1
    w = 1 / (1 + math.exp(0.5))
    assert d["reward_policy_weighted"] == pytest.approx((w + 1.0) / 2)


def test_policy_kl_is_zero_against_itself_and_grows_as_the_policy_moves() -> None:
    """The real KL(pi || ref), sampled from the policy: exactly 0 when the policy is its reference, positive
    once its parameters move (the k3 term on stored candidates is neither)."""
    import copy

    from leverplus.features import FeatureTable
    from leverplus.policy import PointerSelector, PolicyConfig
    from leverplus.policy.train import Group, policy_kl

    rng = np.random.default_rng(0)
    vecs = rng.random((40, 6)).astype(np.float32)
    table = FeatureTable("simple", "train", np.arange(40, dtype=np.int64), vecs[:, :3], vecs[:, 3:])
    groups = [Group(q, [i for i in range(40) if i != q][:12], [[1, 2]], [1.0]) for q in range(10)]
    torch.manual_seed(0)
    net = PointerSelector(PolicyConfig(feature_dim=6, hidden=16, heads=2))
    reference = copy.deepcopy(net)
    assert policy_kl(net, reference, groups, table, table) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert policy_kl(net, reference, groups, table, table, samples=32) > 0.01
