"""The clip-lora policy encoder (issue 14) on a tiny real CLIPModel built from a config: adapters train and the base
never moves; adapters off is the base exactly; checkpoints hold adapters and head only, round-trip strictly and
refuse another base; GRPO's penalty is zero at its first step and its KL to the reference grows as adapters move."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from leverplus.data import load_split
from leverplus.data.synth import synthesize
from leverplus.errors import IntegrityError
from leverplus.features.tiny import build_clip
from leverplus.policy import PointerSelector, PolicyConfig, load_policy, save_policy
from leverplus.policy.bank import InputBank
from leverplus.policy.batch import make_batch
from leverplus.policy.groups import Group
from leverplus.policy.towers import load_processor, load_towers
from leverplus.policy.train import policy_kl, train_grpo, train_rce
from leverplus.store import open_store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, InputBank, list[Group]]:
    root = tmp_path_factory.mktemp("clip-lora")
    clip = build_clip(root / "tiny-clip")
    store = open_store(str(root / "world"))
    synthesize(store, 0, {"train": 40})
    bank = InputBank(load_split(store, "train"), load_processor(str(clip)))
    ids = sorted(r.question_id for r in bank.split)
    rng = random.Random(0)
    groups = []
    for q in ids[:12]:
        pool = rng.sample([i for i in ids if i != q], 8)
        groups.append(Group(q, pool, [rng.sample(pool, 2) for _ in range(4)], [1.0, 0.0, 1.0, 0.0]))
    return clip, bank, groups


def _policy(clip: Path) -> PointerSelector:
    torch.manual_seed(0)
    towers = load_towers(str(clip), rank=4, alpha=8.0)
    return PointerSelector(PolicyConfig(feature_dim=towers.dim, hidden=16, heads=2), towers)


OPTIONS = {"lr": 5e-2, "batch_size": 6, "grad_clip": 1.0, "seed": 0}


def _base(net: PointerSelector) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.towers.state_dict().items() if "lora_" not in k}


def test_adapters_train_and_the_base_weights_never_move(tiny) -> None:
    clip, bank, groups = tiny
    net = _policy(clip)
    before_base, before_adapters = _base(net), net.towers.adapter_state()
    trainable = {n for n, p in net.towers.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # only adapters train inside the towers
    train_rce(net, groups, bank, bank, epochs=2, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    after_base, after_adapters = _base(net), net.towers.adapter_state()
    assert all(torch.equal(before_base[k], after_base[k]) for k in before_base)
    moved = [k for k in before_adapters if not torch.equal(before_adapters[k], after_adapters[k])]
    assert len(moved) == len(before_adapters)  # every adapter matrix (A and B, both towers) learned


def test_adapters_off_is_the_base_model_exactly(tiny) -> None:
    from transformers import CLIPModel

    clip, bank, groups = tiny
    net = _policy(clip)
    train_rce(net, groups, bank, bank, epochs=1, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    inputs = bank.inputs([g.question_id for g in groups])
    base = CLIPModel.from_pretrained(clip).eval()
    image = base.get_image_features(pixel_values=inputs.pixels())
    text = base.get_text_features(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask)
    image, text = getattr(image, "pooler_output", image), getattr(text, "pooler_output", text)
    expected = torch.cat(
        [torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1)], -1
    )
    expected = expected / 2**0.5
    with torch.no_grad():
        with net.towers.base_only():
            off = net.towers(inputs)
        on = net.towers(inputs)
        assert torch.equal(off, expected[inputs.index])
        assert not torch.allclose(on, off)  # the trained adapters do change the features


def test_a_checkpoint_holds_adapters_and_head_only_and_refuses_another_base(tiny, tmp_path: Path) -> None:
    clip, bank, groups = tiny
    net = _policy(clip)
    train_rce(net, groups, bank, bank, epochs=1, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    store = open_store(str(tmp_path / "ck"))
    save_policy(net, store, "sft", {"stage": "sft"})
    saved = load(store.get_bytes("sft/model.safetensors"))
    assert all("lora_" in k for k in saved if k.startswith("adapter.")) and any(k.startswith("adapter.") for k in saved)
    assert not [k for k in saved if k.startswith("towers.")]  # no base weight in the file
    config = store.get_bytes("sft/config.json").decode()
    assert net.towers.base_sha256 in config and '"rank": 4' in config

    loaded, recorded = load_policy(open_store(str(tmp_path / "ck" / "sft")))
    assert recorded["towers"]["trainable_parameters"] == net.towers.trainable_parameters() > 0
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], bank, bank)
    actions = torch.tensor([[0, 1]] * len(groups))
    with torch.no_grad():
        assert torch.equal(net.eval().log_prob(batch.query, batch.pool, batch.mask, actions),
                           loaded.log_prob(batch.query, batch.pool, batch.mask, actions))  # fmt: skip

    other = build_clip(tmp_path / "other-clip", seed=1)  # same architecture, other weights
    with pytest.raises(IntegrityError, match=r"adapters were trained on base weights [0-9a-f]{12}"):
        load_policy(open_store(str(tmp_path / "ck" / "sft")), clip_model=str(other))
    import json

    from safetensors.torch import save

    raw = dict(saved)
    raw.pop(next(k for k in raw if k.startswith("adapter.")))
    info = store.put_bytes("sft/model.safetensors", save(raw))
    store.put_bytes("sft/config.json", json.dumps({**json.loads(config), "model_sha256": info.sha256}).encode())
    with pytest.raises(IntegrityError, match=r"\(adapters\): missing keys"):
        load_policy(open_store(str(tmp_path / "ck" / "sft")))


def _exact_kl(net: PointerSelector, reference: PointerSelector, groups: list[Group], bank: InputBank) -> float:
    """KL(pi || ref) over every ordered 2-pick sequence of each pool (8 x 7 of them), averaged over the groups: the
    exact value the sampled estimate `grpo/kl_sampled` is noisy around."""
    pairs = torch.tensor([(i, j) for i in range(8) for j in range(8) if i != j])
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], bank, bank)
    actions = pairs.expand(len(groups), *pairs.shape)  # (groups, 56, 2): every sequence of each pool
    with torch.no_grad():
        logp = net.eval().log_prob(batch.query, batch.pool, batch.mask, actions)
        ref = reference.eval().log_prob(batch.query, batch.pool, batch.mask, actions)
    net.train()
    assert torch.allclose(logp.exp().sum(1), torch.ones(len(groups)), atol=1e-4)  # every sequence is enumerated
    return float((logp.exp() * (logp - ref)).sum(1).mean())


def test_grpo_penalty_is_zero_at_its_first_step_and_kl_grows_as_adapters_move(tiny) -> None:
    clip, bank, groups = tiny
    net = _policy(clip)
    start = copy.deepcopy(net)
    assert _exact_kl(net, start, groups, bank) == pytest.approx(0.0, abs=1e-6)
    curve: list[tuple[int, dict[str, float]]] = []
    kls: list[float] = []
    options = {**OPTIONS, "lr": 1e-2, "sink": lambda s, m: curve.append((s, m))}  # 1e-1 oscillates around the start
    train_grpo(net.train(), groups, bank, bank, epochs=4, beta=0.1, clip_eps=0.2, **options,
               on_epoch_end=lambda _, model: kls.append(_exact_kl(model, start, groups, bank)))  # fmt: skip
    first = next(m for _, m in curve if "grpo/k3_on_candidates" in m)
    assert first["grpo/k3_on_candidates"] == pytest.approx(0.0, abs=1e-7)  # the reference is where GRPO started
    assert 0 < kls[0] < kls[-1] and kls[-1] > 0.05  # the policy moves away from its reference as the adapters train
    assert len([m for _, m in curve if "grpo/kl_sampled" in m]) == 4  # the sampled estimate is logged per epoch
    # ...and, with enough draws, it is the exact KL: a mean over every sampled sequence of every group.
    sampled = policy_kl(net.eval(), start.eval(), groups, bank, bank, samples=2000, seed=0)
    net.train()
    assert sampled == pytest.approx(kls[-1], rel=0.15)
    assert not torch.equal(start.towers.adapter_state()[next(iter(start.towers.adapter_state()))],
                           net.towers.adapter_state()[next(iter(start.towers.adapter_state()))])  # fmt: skip


TINY_CLIP_LORA = """\
data: {synth_train: 150, synth_val: 30}
pool: {size: 8}
policy: {encoder: clip-lora, lora_rank: 4, lora_alpha: 8, precision: bf16}
run: {device: cpu}
rl: {target_new_queries: 6, prior_acceptance_rate: 0.25, shard_size: 12, candidates_per_query: 6,
     min_pos_ratio: 0.1, max_pos_ratio: 0.9, rce_epochs: 1, grpo_epochs: 2, batch_queries: 4, seeds: 1}
sft: {anchors: 12, candidates: 3, beam_width: 2, epochs: 2}
eval: {num_questions: 10, shots: [1, 2], bootstrap_samples: 100}
"""


@pytest.mark.slow
def test_a_clip_lora_run_trains_adapters_through_every_stage_and_reports_them(tmp_path: Path) -> None:
    """`leverplus run balanced-v3` with policy.encoder clip-lora in the synthetic world: SFT, RCE, GRPO and eval on a
    tiny CLIP, checkpoints of adapters and head, and a report that says what the policy saw."""
    import json
    import os
    import subprocess
    import sys

    clip = build_clip(tmp_path / "tiny-clip")
    (tmp_path / "lora.yaml").write_text(TINY_CLIP_LORA)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "leverplus", "run", "balanced-v3", "--profile", "embedded", "--config", "lora.yaml",
         "--set", f"features.model={clip}", "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = tmp_path / "leverplus-store"
    configs = {s: json.loads((store / f"runs/run-0001/checkpoints/{s}/config.json").read_text())
               for s in ("sft", "rce", "grpo")}  # fmt: skip
    weights = {s: load((store / f"runs/run-0001/checkpoints/{s}/model.safetensors").read_bytes()) for s in configs}
    for stage, config in configs.items():
        assert config["towers"]["encoder"] == "clip-lora" and config["towers"]["lora"]["rank"] == 4
        assert not [k for k in weights[stage] if k.startswith("towers.")]  # never the base weights
    adapter = next(k for k in weights["sft"] if k.startswith("adapter.") and "lora_B" in k)
    assert weights["sft"][adapter].abs().sum() > 0  # SFT moved the adapters away from zero
    assert not torch.equal(weights["sft"][adapter], weights["grpo"][adapter])  # and RCE/GRPO moved them on
    metrics = json.loads((store / "runs/run-0001/report/metrics.json").read_text())
    encoder = metrics["training"]["policy_encoder"]
    assert encoder["encoder"] == "clip-lora" and encoder["lora_rank"] == 4
    assert encoder["trainable_parameters"] == configs["grpo"]["towers"]["trainable_parameters"] > 0
    assert metrics["eval"]["policy"]["1"]["n"] == 10
    report = (store / "runs/run-0001/report/report.md").read_text()
    assert "Policy encoder: `clip-lora`" in report and "LoRA rank 4" in report
    assert encoder["trained_on"] == {"device": "cpu", "precision": "bf16"}  # the stages autocast as asked
    assert "trained on cpu in bf16" in report


def test_grpo_on_clip_lora_resumes_from_its_last_epoch_identically(tiny, tmp_path: Path) -> None:
    """A resume state holds the head and the adapters (not the base) and continues byte-identically."""
    from leverplus.policy.resume import load_state, save_state

    clip, bank, groups = tiny
    store = open_store(str(tmp_path / "states"))
    start = _policy(clip)
    options = {**OPTIONS, "sink": lambda *_: None, "beta": 0.1, "clip_eps": 0.2}
    whole = train_grpo(copy.deepcopy(start), groups, bank, bank, epochs=3, **options)

    def keep(state, net) -> None:
        if state.epoch == 2:
            save_state(store, "resume.safetensors", state, {"guard": 1})
            raise KeyboardInterrupt  # killed after epoch 2

    with pytest.raises(KeyboardInterrupt):
        train_grpo(copy.deepcopy(start), groups, bank, bank, epochs=3, on_epoch_end=keep, **options)
    saved = load(store.get_bytes("resume.safetensors"))
    assert any("lora_" in k for k in saved) and not [
        k for k in saved if k.startswith("model.towers.") and "lora_" not in k
    ]
    resumed = train_grpo(copy.deepcopy(start), groups, bank, bank, epochs=3,
                         resume=load_state(store, "resume.safetensors", {"guard": 1}), **options)  # fmt: skip
    for (name, a), b in zip(whole.trained_state().items(), resumed.trained_state().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_image_cache_is_bounded_and_serves_the_same_pixels(tiny) -> None:
    """Cached crops are uint8 and go through the same arithmetic as fresh ones (a batch never depends on the cache),
    which is CLIP's own preprocessing up to float rounding."""
    _, bank, groups = tiny
    ids = [g.question_id for g in groups[:4]]
    images = [bank.split.load_image(bank.split[q]) for q in ids]
    clip_preprocessed = bank.processor(images=images, return_tensors="pt")["pixel_values"]
    assert torch.allclose(bank.inputs(ids).pixels()[bank.inputs(ids).index], clip_preprocessed, atol=1e-5)
    assert bank.inputs(ids).crops.dtype == torch.uint8 and all(p.dtype == torch.uint8 for p in bank._pixels.values())
    small = InputBank(bank.split, bank.processor, max_images=3)
    ids = [q for g in groups[:6] for q in [g.question_id, *g.pool]]
    assert len({bank.split[q].image_id for q in ids}) > 3  # more images than the cache holds
    first = small.inputs(ids)
    assert len(small._pixels) == 3
    assert torch.equal(first.crops, bank.inputs(ids).crops)  # evicted images come back identical
    assert torch.equal(small.inputs(ids).crops, first.crops)


def test_a_policy_of_the_other_encoder_is_refused_as_an_init(tmp_path: Path) -> None:
    from leverplus.config import load_settings
    from leverplus.errors import DataError
    from leverplus.stages.context import StageContext
    from leverplus.stages.train import _load_init

    store = open_store(str(tmp_path))
    save_policy(PointerSelector(PolicyConfig(feature_dim=8, hidden=16, heads=2)), store, "ck", {"encoder": "simple"})
    ctx = StageContext(load_settings(overrides={"store.uri": str(tmp_path), "policy.encoder": "clip-lora"}), "rce")
    with pytest.raises(DataError, match=r"checkpoint ck is a frozen policy; the settings say policy.encoder=clip-lora"):
        _load_init(ctx, "ck")


def test_grpo_reference_shares_the_base_and_stays_where_grpo_started(tiny) -> None:
    """The reference is the policy GRPO started from (adapters included, not the bare base), held as a frozen
    second adapter on the same towers: no second CLIP, and training the policy never moves it."""
    from leverplus.policy.network import frozen_copy

    clip, bank, groups = tiny
    net = _policy(clip)
    train_rce(net, groups, bank, bank, epochs=1, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], bank, bank)
    actions = torch.tensor([[0, 1]] * len(groups))

    def logp(policy: PointerSelector) -> torch.Tensor:
        with torch.no_grad():
            return policy.log_prob(batch.query, batch.pool, batch.mask, actions)

    start = logp(net.eval())
    with torch.no_grad(), net.towers.base_only():
        base = net.log_prob(batch.query, batch.pool, batch.mask, actions)
    assert not torch.allclose(start, base)  # the start is not the bare base: adapters-off would be the wrong reference
    reference = frozen_copy(net)
    head = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("towers."))
    assert sum(p.numel() for p in reference.parameters()) == head  # the towers are shared, not copied
    assert torch.equal(logp(reference), start)
    trainable = [n for n, p in net.towers.named_parameters() if p.requires_grad]
    assert trainable and all(".policy." in n for n in trainable)  # the reference adapter never trains
    train_rce(net.train(), groups, bank, bank, epochs=2, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    assert not torch.allclose(logp(net.eval()), start)
    assert torch.equal(logp(reference), start)  # still where GRPO started
    assert not [k for k in net.trained_state() if ".reference." in k]  # resume states hold the policy's adapters


def test_bf16_autocast_runs_the_towers_in_bf16_and_keeps_weights_and_gradients_fp32(tiny) -> None:
    """policy.precision bf16 (auto's choice on cuda), run here on cpu, where torch autocasts the same way: the
    towers' features differ from fp32 by rounding only, training moves every adapter, and the base does not move."""
    clip, bank, groups = tiny
    net = _policy(clip).eval()
    inputs = bank.inputs([g.question_id for g in groups])
    with torch.no_grad():
        fp32 = net.towers(inputs)
        net.towers.autocast = torch.bfloat16
        bf16 = net.towers(inputs)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # autocast was on; the output is fp32
    assert (bf16 - fp32).abs().max() < 2e-2 and torch.allclose(bf16.norm(dim=-1), torch.ones(len(groups)), atol=1e-5)
    before_base, before_adapters = _base(net), net.towers.adapter_state()
    losses: list[float] = []
    sink = lambda _, m: losses.append(m.get("rce/loss", 0.0))  # noqa: E731
    train_rce(net.train(), groups, bank, bank, epochs=2, tau_start=1.0, tau_end=1.0, sink=sink, **OPTIONS)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    after = net.towers.adapter_state()
    assert all(not torch.equal(before_adapters[k], after[k]) for k in after)
    assert all(torch.equal(v, _base(net)[k]) for k, v in before_base.items())
    train_grpo(net, groups, bank, bank, epochs=1, beta=0.1, clip_eps=0.2, sink=lambda *_: None, **OPTIONS)


def test_a_stage_places_a_clip_lora_policy_by_run_device_and_policy_precision(tiny, tmp_path: Path) -> None:
    from leverplus.config import load_settings
    from leverplus.device import autocast_dtype
    from leverplus.errors import ConfigError
    from leverplus.stages.context import StageContext

    clip, _, _ = tiny
    save_policy(_policy(clip), open_store(str(tmp_path)), "ck", {"stage": "sft"})

    def placed(**overrides: str) -> PointerSelector:
        base = {"store.uri": str(tmp_path), "policy.encoder": "clip-lora", "features.model": str(clip)}
        return StageContext(load_settings(overrides=base | overrides), "rce").load_policy("ck")[0]

    assert placed(**{"run.device": "cpu"}).towers.autocast is None  # auto on cpu: fp32
    net = placed(**{"run.device": "cpu", "policy.precision": "bf16"})
    assert net.towers.autocast is torch.bfloat16 and net.device == torch.device("cpu")
    assert autocast_dtype("auto", "cuda:0") is torch.bfloat16 and autocast_dtype("fp32", "cuda") is None
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"run\.device is cuda but no CUDA device is visible"):
            placed(**{"run.device": "cuda"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_clip_lora_trains_on_cuda_in_bf16_and_its_checkpoint_loads_on_cpu(tiny, tmp_path: Path) -> None:
    """SFT-free RCE -> GRPO on the GPU with autocast bf16, as a stage runs them there; the checkpoint (cpu tensors)
    loads on a cpu machine and scores like the GPU policy up to bf16 rounding."""
    clip, bank, groups = tiny
    net = _policy(clip).to("cuda")
    net.towers.autocast = torch.bfloat16
    before = net.towers.adapter_state()
    train_rce(net, groups, bank, bank, epochs=2, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    train_grpo(net, groups, bank, bank, epochs=2, beta=0.1, clip_eps=0.2, sink=lambda *_: None, **OPTIONS)
    assert all(not torch.equal(before[k], v) for k, v in net.towers.adapter_state().items())
    kl = policy_kl(net.eval(), copy.deepcopy(net), groups, bank, bank)
    assert kl == pytest.approx(0.0, abs=1e-4)
    store = open_store(str(tmp_path / "ck"))
    save_policy(net, store, "grpo", {"stage": "grpo"})
    loaded, _ = load_policy(open_store(str(tmp_path / "ck" / "grpo")))
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], bank, bank)
    actions = torch.tensor([[0, 1]] * len(groups))
    with torch.no_grad():
        gpu = net.log_prob(batch.to("cuda").query, batch.to("cuda").pool, batch.mask.cuda(), actions.cuda()).cpu()
        cpu = loaded.log_prob(batch.query, batch.pool, batch.mask, actions)
    assert torch.allclose(gpu, cpu, atol=0.1)


def test_checkpoints_evaluated_together_read_one_base_each_through_its_own_adapters(tiny, tmp_path: Path) -> None:
    """Eval loads policy, seeds, rce and sft: with `share`, the second and later clip-lora checkpoints become views of
    the first one's towers (their adapters a frozen second adapter) and score exactly as if loaded alone."""
    clip, bank, groups = tiny
    store = open_store(str(tmp_path))
    net = _policy(clip)
    train_rce(net, groups, bank, bank, epochs=1, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    save_policy(net, store, "sft", {"stage": "sft"})
    train_rce(net, groups, bank, bank, epochs=2, tau_start=1.0, tau_end=1.0, sink=lambda *_: None, **OPTIONS)
    save_policy(net, store, "grpo", {"stage": "grpo"})
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], bank, bank)
    actions = torch.tensor([[0, 1]] * len(groups))

    def logp(policy: PointerSelector) -> torch.Tensor:
        with torch.no_grad():
            return policy.log_prob(batch.query, batch.pool, batch.mask, actions)

    def load_ck(name: str, **kwargs) -> PointerSelector:
        return load_policy(open_store(str(tmp_path / name)), **kwargs)[0]

    first = load_ck("grpo")
    alone = {name: logp(load_ck(name)) for name in ("grpo", "sft")}
    second = load_ck("sft", share=first.towers)
    assert second.towers is first.towers  # one base CLIP in memory
    assert sum(p.numel() for p in second.parameters()) == sum(
        p.numel() for n, p in first.named_parameters() if not n.startswith("towers.")
    )  # the view holds a head only
    assert torch.equal(logp(second), alone["sft"]) and torch.equal(logp(first), alone["grpo"])
    assert not torch.allclose(alone["sft"], alone["grpo"])  # two different policies, both intact

    other = build_clip(tmp_path / "other-clip", seed=1)
    save_policy(_policy(other), store, "other", {"stage": "sft"})
    with pytest.raises(IntegrityError, match="adapters were trained on base weights"):
        load_ck("other", share=first.towers)
    torch.manual_seed(0)
    towers = load_towers(str(clip), rank=2, alpha=8.0)
    save_policy(PointerSelector(PolicyConfig(feature_dim=towers.dim, hidden=16, heads=2), towers), store, "r2", {})
    assert load_ck("r2", share=first.towers).towers is not first.towers  # another adapter shape loads on its own
