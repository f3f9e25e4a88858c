"""The selector policy: a pointer network over a query's candidate pool.

The query embedding attends over the pool's embeddings to form a state; then, step by step, every pool item is
scored by scaled cosine with the state, one is picked, it is masked, and a GRU gate folds it into the state. It can
emit any number of shots up to the pool size. Sequence log-probability = sum of per-step log-softmax scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LORA_TARGETS", "PointerSelector", "PolicyConfig"]

# The linear maps that LoRA adapts for RCE/GRPO (the attention and GRU keep their SFT weights).
LORA_TARGETS = ["embed_item", "embed_query", "to_key", "to_query"]


@dataclass(frozen=True)
class PolicyConfig:
    feature_dim: int
    hidden: int = 128
    heads: int = 4
    init_scale: float = 10.0  # cosine logit scale at init: sharp enough to prefer, soft enough to explore

    def to_dict(self) -> dict:
        return asdict(self)


class PointerSelector(nn.Module):
    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.policy_config = config  # not `config`: wrappers such as peft treat that name as an HF config
        h = config.hidden
        self.embed_item = nn.Linear(config.feature_dim, h)
        self.embed_query = nn.Linear(config.feature_dim, h)
        self.attend = nn.MultiheadAttention(h, config.heads, batch_first=True)
        self.gate = nn.GRUCell(h, h)
        self.to_key = nn.Linear(h, h)
        self.to_query = nn.Linear(h, h)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))

    def encode(self, query: torch.Tensor, pool: torch.Tensor, pool_mask: torch.Tensor):  # noqa: ANN201
        """query (B, D), pool (B, P, D), pool_mask (B, P) True where an item exists -> state, items, keys."""
        items = self.embed_item(pool)  # (B, P, H)
        q = self.embed_query(query).unsqueeze(1)  # (B, 1, H)
        context, _ = self.attend(q, items, items, key_padding_mask=~pool_mask)  # (B, 1, H)
        state = (q + context).squeeze(1)  # (B, H)
        keys = F.normalize(self.to_key(items), dim=-1)  # (B, P, H)
        return state, items, keys

    def step_log_probs(self, state: torch.Tensor, keys: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """log-softmax over the still-available pool items. -> (B, P)"""
        direction = F.normalize(self.to_query(state), dim=-1)  # (B, H)
        logits = self.log_scale.exp() * torch.einsum("bph,bh->bp", keys, direction)
        return torch.log_softmax(logits.masked_fill(~available, float("-inf")), dim=-1)

    def _advance(self, state: torch.Tensor, items: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
        chosen = items[torch.arange(items.shape[0]), picked]  # (B, H)
        return self.gate(chosen, state)

    def log_prob(
        self, query: torch.Tensor, pool: torch.Tensor, pool_mask: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """Sequence log-probability of given picks. actions (B, T) pool indices in prompt order -> (B,)"""
        state, items, keys = self.encode(query, pool, pool_mask)
        available = pool_mask.clone()
        total = torch.zeros(query.shape[0], device=query.device)
        rows = torch.arange(query.shape[0], device=query.device)
        for t in range(actions.shape[1]):
            step = self.step_log_probs(state, keys, available)  # (B, P)
            total = total + step[rows, actions[:, t]]
            available = available.clone()
            available[rows, actions[:, t]] = False
            state = self._advance(state, items, actions[:, t])
        return total

    @torch.no_grad()
    def select(
        self,
        query: torch.Tensor,
        pool: torch.Tensor,
        pool_mask: torch.Tensor,
        shots: int,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Pick `shots` distinct pool items per query, greedily or by sampling. -> (B, shots) pool indices"""
        state, items, keys = self.encode(query, pool, pool_mask)
        available = pool_mask.clone()
        rows = torch.arange(query.shape[0], device=query.device)
        picks = []
        for _ in range(shots):
            step = self.step_log_probs(state, keys, available)
            probs = step.exp()
            picked = probs.argmax(dim=-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(1)
            picks.append(picked)
            available[rows, picked] = False
            state = self._advance(state, items, picked)
        return torch.stack(picks, dim=1) if picks else torch.zeros(query.shape[0], 0, dtype=torch.long)
