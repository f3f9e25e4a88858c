"""Losses as plain functions of sequence-level log-probabilities, mirroring DESIGN §3.

Shapes: G candidates per group; functions accept (G,) or (B, G) and reduce with a mean over everything.
"""

from __future__ import annotations

import torch

__all__ = ["group_advantages", "grpo_diagnostics", "grpo_loss", "rce_loss"]


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean) / (std + eps) within each group, sample std (unbiased)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, unbiased=True)
    return (rewards - mean) / (std + eps)


def rce_loss(logp: torch.Tensor, rewards: torch.Tensor, tau: float) -> torch.Tensor:
    """L = sum_i softmax_i(r_i / tau) * (-log pi(a_i | q)), averaged over groups."""
    weights = torch.softmax(rewards / tau, dim=-1).detach()  # (..., G)
    return (weights * -logp).sum(dim=-1).mean()


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.1,
) -> torch.Tensor:
    """-min(rho A, clip(rho, 1-eps, 1+eps) A) + beta * (exp(ref - logp) - (ref - logp) - 1), mean over the group."""
    ratio = torch.exp(logp - old_logp.detach())
    pg = -torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    log_ref_ratio = ref_logp.detach() - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1  # k3 estimator, >= 0
    return (pg + beta * kl).mean()


@torch.no_grad()
def grpo_diagnostics(
    logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, rewards: torch.Tensor, clip_eps: float = 0.2
) -> dict[str, float]:
    """What explains a GRPO step: the ratio's range and how often the clip acts, groups with no reward variance, and
    the k3 penalty term evaluated on the stored candidates. The candidates were sampled by the scoring policy, not
    by pi_theta, so that term is the loss's penalty, not an estimate of KL(pi_theta || ref): the real KL is
    `policy_kl` in policy/train.py, sampled from the policy itself."""
    ratio = torch.exp(logp - old_logp)
    log_ref_ratio = ref_logp - logp
    zero_std = (rewards.std(dim=-1, unbiased=True) == 0).float()
    return {
        "k3_on_candidates": float((torch.exp(log_ref_ratio) - log_ref_ratio - 1).mean()),
        "clip_frac": float(((ratio - 1).abs() > clip_eps).float().mean()),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "frac_reward_zero_std": float(zero_std.mean()),
        # Offline, the stored candidates' mean reward never moves; what moves is which of them the policy prefers:
        # the reward of each group's candidates weighted by the policy's renormalised probabilities.
        "reward_policy_weighted": float((torch.softmax(logp, dim=-1) * rewards).sum(dim=-1).mean()),
    }
