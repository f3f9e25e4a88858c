"""The selector policy: a pointer network over a query's candidate pool.

The query embedding attends over the pool's embeddings to form a state; then, step by step, every pool item is
scored by scaled cosine with the state, one is picked, it is masked, and a GRU gate folds it into the state. It can
emit any number of shots up to the pool size. Sequence log-probability = sum of per-step log-softmax scores.

With `prior` (policy.prior), each step's score also carries MMR as a residual, on the features themselves:

    logit_i = scale · cos(key_i, state) + a · cos(query, item_i) − b · max_{j picked} cos(item_i, item_j)

a and b are learned, starting where the policy picks like MMR, so training starts from the strong heuristic and
learns where to depart from it, instead of having to rediscover similarity through its projections first.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leverplus.policy.towers import ADAPTER, ClipTowers, TowerInputs

REFERENCE = "reference"  # the frozen adapter GRPO's reference reads
# (a, b) at init: the features' cosines between retrieved items differ by hundredths, so a is large enough that
# similarity ranks sharply; a = 2b is MMR at λ = 2/3.
PRIOR_INIT = (40.0, 20.0)

Features = torch.Tensor | TowerInputs

__all__ = ["PointerSelector", "PolicyConfig", "TowerView", "frozen_copy"]


@dataclass
class _Decoding:
    """Where a decoding stands: the state, the items' embeddings and keys, what is still available, and (prior) the
    features, each item's relevance to the query and its redundancy with what has been picked."""

    state: torch.Tensor  # (B, H)
    items: torch.Tensor  # (B, P, H)
    keys: torch.Tensor  # (B, P, H)
    available: torch.Tensor  # (B, P)
    pool: torch.Tensor | None = None  # (B, P, D)
    relevance: torch.Tensor | None = None  # (B, P)
    redundancy: torch.Tensor | None = None  # (B, P)

    def repeat(self, n: int) -> _Decoding:
        """Each row n times in a row: n sequences decoded from one encoding of the query and its pool."""
        if n == 1:
            return self
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return _Decoding(**{name: None if v is None else v.repeat_interleave(n, 0) for name, v in values.items()})


@dataclass(frozen=True)
class PolicyConfig:
    feature_dim: int
    hidden: int = 128
    heads: int = 4
    init_scale: float = 10.0  # cosine logit scale at init: sharp enough to prefer, soft enough to explore
    prior: bool = False  # the MMR residual above; False in checkpoints made before it (their weights lack it)

    def to_dict(self) -> dict:
        return asdict(self)


class PointerSelector(nn.Module):
    """`towers` (policy.encoder clip-lora): CLIP towers with LoRA adapters that turn `TowerInputs` into the features
    the head reads; without them (frozen) the head reads precomputed feature tensors."""

    def __init__(self, config: PolicyConfig, towers: ClipTowers | None = None) -> None:
        super().__init__()
        self.policy_config = config  # not `config`: wrappers such as peft treat that name as an HF config
        self.towers = towers
        h = config.hidden
        self.embed_item = nn.Linear(config.feature_dim, h)
        self.embed_query = nn.Linear(config.feature_dim, h)
        self.attend = nn.MultiheadAttention(h, config.heads, batch_first=True)
        self.gate = nn.GRUCell(h, h)
        self.to_key = nn.Linear(h, h)
        self.to_query = nn.Linear(h, h)
        self.log_scale = nn.Parameter(torch.tensor(math.log(config.init_scale)))
        if config.prior:
            self.prior_weights = nn.Parameter(torch.tensor(PRIOR_INIT))  # (a, b)

    def head_state(self) -> dict[str, torch.Tensor]:
        """The pointer network's own weights, without the towers (saved apart: adapters only, never the base)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("towers.")}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What training changes: the head and the policy's adapters, not the towers' frozen base weights nor a
        reference adapter (what a resume state holds)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("towers.") or _policy_adapter(k)}

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        from leverplus.policy.strict import check_state

        check_state(self.trained_state(), state, "training state")
        self.load_state_dict(state, strict=False)

    def features(self, x: torch.Tensor | TowerInputs) -> torch.Tensor:
        """The features the head reads: its towers' output, or the stored features it was given. Mixing the two
        would silently score with features the policy was not trained on, so it is an error."""
        if isinstance(x, TowerInputs) != (self.towers is not None):
            kind = "clip-lora" if self.towers is not None else "frozen"
            raise TypeError(f"a {kind} policy was given {type(x).__name__} (use StageContext.policy_inputs)")
        return self.towers(x) if isinstance(x, TowerInputs) else x

    def encode(self, query: Features, pool: Features, pool_mask: torch.Tensor) -> _Decoding:
        """query (B, D), pool (B, P, D) features or the towers' inputs, pool_mask (B, P) True where an item exists
        -> the decoding's starting point."""
        query, pool = self.features(query), self.features(pool)
        items = self.embed_item(pool)  # (B, P, H)
        q = self.embed_query(query).unsqueeze(1)  # (B, 1, H)
        context, _ = self.attend(q, items, items, key_padding_mask=~pool_mask)  # (B, 1, H)
        state = (q + context).squeeze(1)  # (B, H)
        keys = F.normalize(self.to_key(items), dim=-1)  # (B, P, H)
        if not self.policy_config.prior:
            return _Decoding(state, items, keys, pool_mask.clone())
        relevance = torch.einsum("bpd,bd->bp", pool, query)  # (B, P) cosines: the features are unit-norm
        return _Decoding(state, items, keys, pool_mask.clone(), pool, relevance, torch.zeros_like(relevance))

    def step_log_probs(self, d: _Decoding) -> torch.Tensor:
        """log-softmax over the still-available pool items. -> (B, P)"""
        direction = F.normalize(self.to_query(d.state), dim=-1)  # (B, H)
        logits = self.log_scale.exp() * torch.einsum("bph,bh->bp", d.keys, direction)
        if d.relevance is not None:
            a, b = self.prior_weights
            logits = logits + a * d.relevance - b * d.redundancy
        return torch.log_softmax(logits.masked_fill(~d.available, float("-inf")), dim=-1)

    def _advance(self, d: _Decoding, picked: torch.Tensor, first: bool) -> None:
        """Fold the picked items (B,) into the state, mask them, and (prior) update each item's redundancy."""
        rows = torch.arange(d.items.shape[0], device=d.items.device)
        d.state = self.gate(d.items[rows, picked], d.state)
        d.available = d.available.clone()
        d.available[rows, picked] = False
        if d.pool is not None:
            similar = torch.einsum("bpd,bd->bp", d.pool, d.pool[rows, picked])  # (B, P)
            d.redundancy = similar if first else torch.maximum(d.redundancy, similar)

    def log_prob(self, query: Features, pool: Features, pool_mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Sequence log-probability of given picks. actions (B, T) pool indices in prompt order -> (B,); or
        (B, G, T), G sequences per query all scored from one encoding of its pool (a GRPO group) -> (B, G)"""
        d = self.encode(query, pool, pool_mask)
        if actions.dim() == 2:
            return self._sequence_log_prob(d, actions)
        b, g, t = actions.shape
        return self._sequence_log_prob(d.repeat(g), actions.reshape(b * g, t)).view(b, g)

    def _sequence_log_prob(self, d: _Decoding, actions: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(actions.shape[0], device=actions.device)
        rows = torch.arange(actions.shape[0], device=actions.device)
        for t in range(actions.shape[1]):
            step = self.step_log_probs(d)  # (B, P)
            total = total + step[rows, actions[:, t]]
            self._advance(d, actions[:, t], first=t == 0)
        return total

    @torch.no_grad()
    def select(
        self,
        query: Features,
        pool: Features,
        pool_mask: torch.Tensor,
        shots: int,
        greedy: bool = True,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        draws: int = 1,
    ) -> torch.Tensor:
        """Pick `shots` distinct pool items per query, greedily or by sampling at a temperature; `draws` sequences per
        query (rows of one query are consecutive), decoded from one encoding of it. -> (B * draws, shots) pool
        indices"""
        d = self.encode(query, pool, pool_mask).repeat(draws)
        picks = []
        for t in range(shots):
            step = self.step_log_probs(d)
            probs = step.exp() if temperature == 1.0 else torch.softmax(step / temperature, dim=-1)
            picked = probs.argmax(dim=-1) if greedy else _sample(probs, generator)
            picks.append(picked)
            self._advance(d, picked, first=t == 0)
        return torch.stack(picks, dim=1) if picks else d.available.new_zeros(d.available.shape[0], 0, dtype=torch.long)

    @property
    def device(self) -> torch.device:
        return self.log_scale.device


def _sample(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row, on the generator's device (a CPU generator draws the same picks whatever the policy's
    device, so a seeded round does not depend on where its policy ran). -> (B,)"""
    where = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(where), 1, generator=generator).squeeze(1).to(probs.device)


def _policy_adapter(key: str) -> bool:
    return "lora_" in key and f".{ADAPTER}." in key


class TowerView(PointerSelector):
    """A clip-lora head that reads shared towers through one of their frozen named adapters: GRPO's reference, or
    one of several checkpoints evaluated on one base. The towers are not a submodule here, so moving, freezing or
    saving a view never touches them (or the policy that owns them)."""

    def __init__(self, config: PolicyConfig, head: dict[str, torch.Tensor], towers: ClipTowers, adapter: str) -> None:
        super().__init__(config)
        self.load_state_dict(head)
        self.to(towers.device)
        object.__setattr__(self, "towers", towers)
        self.adapter = adapter

    def features(self, x: torch.Tensor | TowerInputs) -> torch.Tensor:
        with self.towers.using(self.adapter):
            return super().features(x)


def frozen_copy(net: PointerSelector) -> PointerSelector:
    """The policy as it is now, frozen: GRPO's reference. A frozen-encoder policy is deep-copied (~10^5 parameters);
    a clip-lora one becomes a view: a copy of its head, and its adapters frozen as a second adapter on its towers."""
    if net.towers is None:
        return copy.deepcopy(net).eval().requires_grad_(False)
    net.towers.add_frozen_adapter(REFERENCE, net.towers.adapter_state(), "GRPO's reference")
    return TowerView(net.policy_config, net.head_state(), net.towers, REFERENCE).eval().requires_grad_(False)
