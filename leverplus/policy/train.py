"""SFT, RCE and GRPO training loops for the selector. Each reads top to bottom in one order: set lr -> forward ->
loss -> backward -> clip -> step -> zero grad -> log. Metrics go to one sink with slash-namespaced names.

GRPO's reference is a frozen copy of the policy GRPO started from (see `train_grpo`).

Every loop calls `on_epoch_end` with a TrainState (weights, optimizer moments, both random generators, step); given
back as `resume`, the loop continues after that epoch and ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from leverplus.policy.batch import Source, group_actions, make_batch, sequences_to_actions
from leverplus.policy.groups import Group
from leverplus.policy.losses import group_advantages, grpo_diagnostics, grpo_loss, rce_loss
from leverplus.policy.network import PointerSelector, frozen_copy
from leverplus.policy.resume import TrainState

__all__ = ["Group", "SFTExample", "policy_kl", "train_grpo", "train_rce", "train_sft"]

Sink = Callable[[int, dict[str, float]], None]  # (global step, metrics)


@dataclass(frozen=True)
class SFTExample:
    question_id: int
    pool: list[int]
    sequence: list[int]  # ICD question_ids in prompt order


def _batches(items: Sequence[Any], size: int, rng: random.Random) -> list[list[Any]]:
    order = list(items)
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


EpochEnd = Callable[[TrainState, PointerSelector], None]  # called after every epoch with what resumes it


def _no_epoch_end(state: TrainState, net: PointerSelector) -> None:
    return None


def _restore(
    net: PointerSelector, optimizer: torch.optim.Optimizer, rng: random.Random, resume: TrainState | None
) -> tuple[int, int]:
    """Continue where `resume` left off: weights, optimizer moments, both random generators. -> (step, epoch)"""
    if resume is None:
        return 0, 0
    net.load_trained_state(resume.model)
    optimizer.load_state_dict(resume.optimizer)
    rng.setstate(resume.python_rng)
    torch.set_rng_state(resume.torch_rng)
    return resume.step, resume.epoch


def _state(
    epochs_done: int, step: int, net: PointerSelector, optimizer: torch.optim.Optimizer, rng: random.Random
) -> TrainState:
    return TrainState(
        epochs_done, step, net.trained_state(), optimizer.state_dict(), rng.getstate(), torch.get_rng_state(), []
    )


def _step(net: PointerSelector, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> float:
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def train_sft(
    net: PointerSelector,
    examples: Sequence[SFTExample],
    queries: Source,
    icds: Source,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    grad_clip: float,
    seed: int,
    sink: Sink,
    on_epoch_end: EpochEnd = _no_epoch_end,
    resume: TrainState | None = None,
) -> PointerSelector:
    """Maximise log pi(sequence | query, pool) on InfoScore beam sequences."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    step, first = _restore(net, optimizer, rng, resume)
    for epoch in range(first, epochs):
        for chunk in _batches(examples, batch_size, rng):
            batch = make_batch([e.question_id for e in chunk], [e.pool for e in chunk], queries, icds).to(net.device)
            actions = sequences_to_actions(batch.pool_ids, [e.sequence for e in chunk]).to(net.device)
            logp = net.log_prob(batch.query, batch.pool, batch.mask, actions)  # (B,)
            loss = -logp.mean()
            grad_norm = _step(net, optimizer, loss, grad_clip)
            step += 1
            sink(step, {"sft/loss": float(loss.detach()), "sft/grad_norm": grad_norm, "sft/epoch": epoch})
        on_epoch_end(_state(epoch + 1, step, net, optimizer, rng), net)
    return net


def _group_logp(net: PointerSelector, groups: Sequence[Group], queries: Source, icds: Source):  # noqa: ANN202
    """log pi of every candidate of every group -> (B, G), and rewards (B, G). Each group's pool is encoded once and
    its G candidates are decoded from that encoding."""
    batch = make_batch([x.question_id for x in groups], [x.pool for x in groups], queries, icds).to(net.device)
    actions = group_actions(batch.pool_ids, [x.sequences for x in groups]).to(net.device)  # (B, G, T)
    logp = net.log_prob(batch.query, batch.pool, batch.mask, actions)
    rewards = torch.tensor([x.rewards for x in groups], dtype=torch.float32, device=net.device)
    return logp, rewards


@torch.no_grad()
def _all_logp(
    net: PointerSelector, groups: Sequence[Group], queries: Source, icds: Source, chunk: int = 64
) -> torch.Tensor:
    """log pi of every candidate of every group, without gradients. -> (N, G)"""
    return torch.cat([_group_logp(net, groups[i : i + chunk], queries, icds)[0] for i in range(0, len(groups), chunk)])


def train_rce(
    net: PointerSelector,
    groups: Sequence[Group],
    queries: Source,
    icds: Source,
    *,
    epochs: int,
    lr: float,
    tau_start: float,
    tau_end: float,
    batch_size: int,
    grad_clip: float,
    seed: int,
    sink: Sink,
    on_epoch_end: EpochEnd = _no_epoch_end,
    resume: TrainState | None = None,
) -> PointerSelector:
    """Reward-weighted cross-entropy with the temperature annealed linearly from tau_start to tau_end."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    total_steps = max(1, epochs * -(-len(groups) // batch_size))
    step, first = _restore(net, optimizer, rng, resume)
    for epoch in range(first, epochs):
        for idx in _batches(range(len(groups)), batch_size, rng):  # indices: a GroupTable builds only a batch
            tau = tau_start + (tau_end - tau_start) * step / max(1, total_steps - 1)
            logp, rewards = _group_logp(net, [groups[i] for i in idx], queries, icds)
            loss = rce_loss(logp, rewards, tau)
            grad_norm = _step(net, optimizer, loss, grad_clip)
            step += 1
            sink(
                step, {"rce/loss": float(loss.detach()), "rce/tau": tau, "rce/grad_norm": grad_norm, "rce/epoch": epoch}
            )
        on_epoch_end(_state(epoch + 1, step, net, optimizer, rng), net)
    return net


@torch.no_grad()
def policy_kl(
    net: PointerSelector,
    reference: PointerSelector,
    groups: Sequence[Group],
    queries: Source,
    icds: Source,
    *,
    samples: int = 8,
    seed: int = 0,
) -> float:
    """KL(pi_theta || ref) over the groups' pools, estimated from sequences sampled from pi_theta itself (of the
    groups' candidate length): mean of log pi_theta(a) - log ref(a). Unbiased, unlike the k3 term on stored
    candidates."""
    shots = len(groups[0].sequences[0])
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(groups), 64):
        chunk = groups[i : i + 64]
        batch = make_batch([g.question_id for g in chunk], [g.pool for g in chunk], queries, icds).to(net.device)
        picks = net.select(batch.query, batch.pool, batch.mask, shots, greedy=False, generator=generator, draws=samples)
        actions = picks.view(len(chunk), samples, shots)
        logp = net.log_prob(batch.query, batch.pool, batch.mask, actions)
        ref = reference.log_prob(batch.query, batch.pool, batch.mask, actions)
        total, count = total + float((logp - ref).sum()), count + logp.numel()  # (groups, samples)
    return total / max(count, 1)


def train_grpo(
    net: PointerSelector,
    groups: Sequence[Group],
    queries: Source,
    icds: Source,
    *,
    epochs: int,
    lr: float,
    beta: float,
    clip_eps: float,
    batch_size: int,
    grad_clip: float,
    seed: int,
    sink: Sink,
    on_epoch_end: EpochEnd = _no_epoch_end,
    resume: TrainState | None = None,
) -> PointerSelector:
    """Offline GRPO on stored groups.

    pi_old is the policy at the start of each epoch (its log-probs are snapshotted then), so the ratio and the clip
    act within an epoch; the reference is the policy GRPO started from, frozen (`frozen_copy`): an exact copy of a
    frozen-encoder selector (~10^5 parameters), or for clip-lora a copy of the head reading the same towers through
    a frozen second adapter holding the starting adapters. Not adapters-off: that would be the base CLIP, not where
    GRPO started.

    `net` is always the starting policy (the reference is built from it); with `resume`, training continues as in
    every loop here.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    reference = frozen_copy(net)
    ref_logp = _all_logp(reference, groups, queries, icds)  # (N, G), once: the reference never changes
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    step, first = _restore(net, optimizer, rng, resume)
    for epoch in range(first, epochs):
        old_logp = _all_logp(net, groups, queries, icds)  # (N, G): pi_old is the policy at the epoch's start
        for idx in _batches(range(len(groups)), batch_size, rng):
            logp, rewards = _group_logp(net, [groups[i] for i in idx], queries, icds)
            advantages = group_advantages(rewards)
            loss = grpo_loss(logp, old_logp[idx], ref_logp[idx], advantages, clip_eps=clip_eps, beta=beta)
            diagnostics = grpo_diagnostics(logp, old_logp[idx], ref_logp[idx], rewards, clip_eps)
            grad_norm = _step(net, optimizer, loss, grad_clip)
            step += 1
            sink(
                step,
                {
                    "grpo/loss": float(loss.detach()),
                    "grpo/grad_norm": grad_norm,
                    "grpo/epoch": epoch,
                    "grpo/reward_mean": float(rewards.mean()),
                    **{f"grpo/{k}": v for k, v in diagnostics.items()},
                },
            )
        kl = policy_kl(net.eval(), reference, groups, queries, icds, seed=seed + epoch)
        net.train()
        sink(step, {"grpo/epoch": epoch, "grpo/kl_sampled": kl})
        on_epoch_end(_state(epoch + 1, step, net, optimizer, rng), net)
    return net
