"""The selector network, strict checkpoints and reward modes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from leverplus.errors import ConfigError, DataError, IntegrityError, NotFoundError
from leverplus.policy import PointerSelector, PolicyConfig, load_policy, save_policy
from leverplus.policy.rewards import REWARD_MODES, reward
from leverplus.records import Candidate
from leverplus.store import LocalStore

D, P = 12, 7  # tiny: feature dim and pool size


def _net(seed: int = 0, prior: bool = False) -> PointerSelector:
    torch.manual_seed(seed)
    return PointerSelector(PolicyConfig(feature_dim=D, hidden=16, heads=2, prior=prior))


def _inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(batch, P, dtype=torch.bool)
    mask[0, -2:] = False  # the first query's pool is shorter
    return torch.randn(batch, D, generator=g), torch.randn(batch, P, D, generator=g), mask


@torch.no_grad()
@pytest.mark.parametrize("prior", [False, True])
def test_log_prob_is_the_sum_of_step_log_softmax(prior: bool) -> None:
    net, (q, pool, mask) = _net(prior=prior), _inputs()
    if prior:  # the prior reads unit-norm features, as stored features and the towers' output are
        q, pool = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(pool, dim=-1)
    actions = torch.tensor([[2, 0], [6, 3], [1, 5]])
    total = net.log_prob(q, pool, mask, actions)
    # Recompute row 1 step by step as the module docstring writes it: scaled cosine of keys with the state, plus
    # (prior) a·relevance − b·redundancy, masking chosen items.
    items = net.embed_item(pool[1])  # (P, H)
    state = net.embed_query(q[1:2]) + net.attend(net.embed_query(q[1:2])[None], items[None], items[None])[0][0]
    keys = torch.nn.functional.normalize(net.to_key(items), dim=-1)
    available, picked, manual = mask[1].clone(), [], 0.0
    for a in actions[1].tolist():
        direction = torch.nn.functional.normalize(net.to_query(state), dim=-1)[0]
        logits = net.log_scale.exp() * (keys @ direction)
        if prior:
            redundancy = torch.stack([pool[1] @ pool[1, j] for j in picked]).max(0).values if picked else 0.0
            logits = logits + net.prior_weights[0] * (pool[1] @ q[1]) - net.prior_weights[1] * redundancy
        manual += float(torch.log_softmax(logits.masked_fill(~available, float("-inf")), dim=-1)[a])
        available[a] = False
        picked.append(a)
        state = net.gate(items[a : a + 1], state)
    assert float(total[1]) == pytest.approx(manual, rel=1e-5)
    probs = torch.exp(net.step_log_probs(net.encode(q, pool, mask)))
    assert torch.allclose(probs.sum(-1), torch.ones(3)) and float(probs[0, -2:].sum()) == 0.0


def test_the_prior_starts_the_policy_at_mmr() -> None:
    """At init a prior policy's greedy picks follow MMR at λ = a / (a + b) wherever its learned term is small."""
    from leverplus.heuristics import mmr

    net, (q, pool, mask) = _net(prior=True), _inputs(batch=16)
    q, pool = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(pool, dim=-1)
    with torch.no_grad():
        net.log_scale.fill_(-20.0)  # the learned term off
        a, b = net.prior_weights.tolist()
    picks = net.select(q, pool, torch.ones_like(mask), 3).tolist()
    assert picks == [mmr(q[i].numpy(), pool[i].numpy(), 3, a / (a + b)) for i in range(16)]


def test_select_gives_distinct_items_inside_the_pool_and_any_number_of_shots() -> None:
    net, (q, pool, mask) = _net(), _inputs()
    for shots in (1, 3, 5):
        for greedy in (True, False):
            picks = net.select(q, pool, mask, shots, greedy=greedy, generator=torch.Generator().manual_seed(1))
            assert picks.shape == (3, shots)
            for row, valid in zip(picks.tolist(), mask.tolist(), strict=True):
                assert len(set(row)) == shots and all(valid[i] for i in row)
    greedy = net.select(q, pool, mask, 2)
    assert torch.isfinite(net.log_prob(q, pool, mask, greedy)).all()


def test_checkpoint_roundtrip_is_exact(tmp_path: Path) -> None:
    net, store = _net(), LocalStore(tmp_path)
    uri = save_policy(net, store, "ckpt", {"stage": "test"})
    loaded, config = load_policy(LocalStore(tmp_path / "ckpt"))
    assert uri.endswith("/ckpt") and config["stage"] == "test" and config["policy"]["hidden"] == 16
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def _tamper(tmp_path: Path, edit) -> Path:
    from safetensors.torch import load, save

    save_policy(_net(), LocalStore(tmp_path), "ckpt", {})
    path = tmp_path / "ckpt" / "model.safetensors"
    state = load(path.read_bytes())
    edit(state)
    path.write_bytes(save(state))
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    config["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()  # the key checks must be what fails
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    return tmp_path / "ckpt"


def test_missing_and_unexpected_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=r"missing keys \['gate.bias_hh'\]"):
        load_policy(LocalStore(_tamper(tmp_path / "a", lambda s: s.pop("gate.bias_hh"))))
    with pytest.raises(IntegrityError, match=r"unexpected keys \['model.extra'\]"):
        load_policy(LocalStore(_tamper(tmp_path / "b", lambda s: s.update({"model.extra": torch.zeros(1)}))))
    with pytest.raises(IntegrityError, match=r"to_key\.weight has shape"):
        load_policy(LocalStore(_tamper(tmp_path / "c", lambda s: s.update({"to_key.weight": torch.zeros(2, 2)}))))


def test_non_safetensors_and_corrupted_checkpoints_are_errors(tmp_path: Path) -> None:
    save_policy(_net(), LocalStore(tmp_path), "ckpt", {})
    model = tmp_path / "ckpt" / "model.safetensors"
    original = model.read_bytes()
    model.write_bytes(original[:-7] + b"garbage")
    with pytest.raises(IntegrityError, match="sha256 differs"):
        load_policy(LocalStore(tmp_path / "ckpt"))
    model.write_bytes(b"\x80\x04\x95pickle-looking bytes, never unpickled")
    with pytest.raises(IntegrityError, match="not a safetensors file"):
        load_policy(LocalStore(tmp_path / "ckpt"))
    with pytest.raises(NotFoundError, match="no policy checkpoint at"):
        load_policy(LocalStore(tmp_path / "nowhere"))


def _candidate(**kw: object) -> Candidate:
    base = {
        "icd_ids": [1, 2],
        "prediction": "x",
        "accuracy": 0.6,
        "correct": True,
        "answer_prob": 0.7,
        "source": "random",
    }
    return Candidate(**{**base, **kw})


def test_reward_modes() -> None:
    c = _candidate()
    values = {mode: reward(c, mode, 1) for mode in REWARD_MODES}
    assert values == pytest.approx(
        {"hard": 1.0, "soft": 0.6, "hard_plus_soft": 1.6, "hard_plus_prob": 1.7, "prob": 0.7}
    )
    assert reward(_candidate(correct=False, accuracy=0.0), "hard_plus_soft", 1) == 0.0


def test_missing_fields_and_bad_values_are_errors_not_fallbacks() -> None:
    with pytest.raises(DataError, match="question_id 9: reward hard_plus_prob needs answer_prob"):
        reward(_candidate(answer_prob=None), "hard_plus_prob", 9)
    with pytest.raises(DataError, match="question_id 9: reward prob needs answer_prob"):
        reward(_candidate(answer_prob=None), "prob", 9)
    with pytest.raises(DataError, match="non-finite reward"):
        reward(_candidate(accuracy=float("nan")), "soft", 9)
    with pytest.raises(DataError, match="non-finite reward"):
        reward(_candidate(answer_prob=float("inf")), "hard_plus_prob", 9)
    with pytest.raises(ConfigError, match="unknown reward mode 'magic'; allowed: hard, soft"):
        reward(_candidate(), "magic", 9)


def test_a_checkpoint_without_a_recorded_hash_is_refused(tmp_path: Path) -> None:
    """Issue 12 D10: strict means strict; altered weights behind a config without model_sha256 used to load."""
    save_policy(_net(), LocalStore(tmp_path), "ckpt", {})
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    del config["model_sha256"]
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="records no model_sha256"):
        load_policy(LocalStore(tmp_path / "ckpt"))
