"""`leverplus sft`, `leverplus rce`, `leverplus grpo`: train the selector and write safetensors checkpoints under
runs/<run-id>/checkpoints/<stage>, each with its provenance and a metrics.jsonl of the training curve."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch

from leverplus.config import RLSettings
from leverplus.errors import ConflictError, DataError, IntegrityError
from leverplus.log import get_logger
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.policy import PointerSelector, save_policy
from leverplus.policy.groups import GroupTable, GroupTableBuilder
from leverplus.policy.resume import TrainState, load_state, save_state
from leverplus.policy.rewards import reward
from leverplus.policy.train import SFTExample, train_grpo, train_rce, train_sft
from leverplus.progress import progress_event
from leverplus.records import canonical_json
from leverplus.stages.balanced import stream_balanced
from leverplus.stages.compat import check_groups
from leverplus.stages.context import StageContext
from leverplus.stages.layout import BALANCED, checkpoint_prefix, sft_prefix, shard_key
from leverplus.stages.shards import read_shard

__all__ = ["grpo_options", "rce_options", "run_grpo", "run_rce", "run_sft"]

RESUME_FILE = "resume.safetensors"  # beside a checkpoint while its training is unfinished


class _Curve:
    """The metrics sink: every step kept for metrics.jsonl, a log line every `every` steps."""

    def __init__(self, every: int = 20) -> None:
        self.rows: list[dict[str, float]] = []
        self.every = every
        self.log = get_logger()

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append({"step": step, **metrics})
        if step % self.every == 1 or self.every == 1:
            self.log.info("train", step=step, **{k: round(v, 5) for k, v in metrics.items()})

    def loss(self) -> dict[str, float]:
        """The newest training loss, for progress: {"loss": value}, or nothing before the first step."""
        for row in reversed(self.rows):
            for name, value in row.items():
                if name.endswith("/loss"):
                    return {"loss": round(value, 5)}
        return {}

    def jsonl(self) -> bytes:
        return b"".join(canonical_json(r) + b"\n" for r in self.rows)


def _save(ctx: StageContext, net: PointerSelector, prefix: str, curve: _Curve, **provenance: Any) -> str:
    ctx.store.put_bytes(f"{prefix}/metrics.jsonl", curve.jsonl())
    return save_policy(
        net,
        ctx.store,
        prefix,
        {
            "settings_hash": ctx.settings_hash,
            "prompt_hash": PROMPT_HASH,
            "encoder": ctx.settings.features.encoder,
            **({"placement": _placement(net)} if net.towers is not None else {}),
            **provenance,
        },
    )


def _placement(net: PointerSelector) -> dict[str, str]:
    """Where a clip-lora policy trained and in what arithmetic (the report states it)."""
    from leverplus.device import precision_name

    return {"device": net.device.type, "precision": precision_name(net.towers.autocast)}


def _save_final(ctx: StageContext, net: PointerSelector, prefix: str, curve: _Curve, **provenance: Any) -> str:
    """The stage's checkpoint; it supersedes the epoch state a killed run would have resumed from."""
    uri = _save(ctx, net, prefix, curve, **provenance)
    ctx.store.delete(f"{prefix}/{RESUME_FILE}")
    return uri


def run_sft(ctx: StageContext, run_id: str) -> str:
    out = checkpoint_prefix(run_id, "sft")
    if done := _trained(ctx, out, None, None):
        return done
    prefix = sft_prefix(run_id)
    plan = ctx.read_plan(f"{prefix}/plan.json")
    examples = []
    for shard in plan.shard_ids():
        for line in read_shard(ctx, shard_key(prefix, shard)).splitlines():
            row = json.loads(line)
            examples += [SFTExample(row["question_id"], row["pool"], seq) for seq in row["sequences"]]
    torch.manual_seed(ctx.settings.run.seed)  # the initial weights are part of the run's reproducibility
    net = ctx.new_policy()
    train = ctx.policy_inputs(net, ctx.settings.data.train_split)
    s, curve = ctx.settings.sft, _Curve()
    guard = _guard(ctx, "", f"{len(examples)} examples")
    resume, on_epoch_end = _epoch_states(ctx, out, curve, guard, ("sft", s.epochs))
    train_sft(
        net,
        examples,
        train,
        train,
        epochs=s.epochs,
        lr=s.lr,
        batch_size=s.batch_size,
        grad_clip=ctx.settings.rl.grad_clip,
        seed=ctx.settings.run.seed,
        sink=curve,
        on_epoch_end=on_epoch_end,
        resume=resume,
    )
    uri = _save_final(ctx, net, out, curve, stage="sft", examples=len(examples), **_training_settings(ctx))
    ctx.log.info("sft checkpoint written", uri=uri, examples=len(examples))
    return uri


def _groups(ctx: StageContext, version: int | None) -> tuple[GroupTable, str]:
    """The training groups of a balanced version as arrays of ids and rewards, each record checked and dropped as
    it is read (a parsed record with its candidates is ~100x the size of what training needs)."""
    found, balanced = stream_balanced(ctx.store, version)
    mode, builder = ctx.settings.rl.reward_mode, GroupTableBuilder()
    for g in balanced:
        check_groups([g], ctx.settings, f"train on balanced set v{found}")
        rewards = [reward(c, mode, g.question_id) for c in g.candidates]
        builder.add(g.question_id, g.pool, [c.icd_ids for c in g.candidates], rewards)
    groups = builder.build()
    if not groups:
        raise DataError(f"{ctx.store.uri_for(BALANCED)}: the balanced set is empty; run a data round first")
    return groups, f"v{found}"


def _load_init(ctx: StageContext, init: str) -> PointerSelector:
    net, config = ctx.load_policy(init)
    kind, wanted = ("clip-lora" if net.towers is not None else "frozen"), ctx.settings.policy.encoder
    if kind != wanted:
        raise DataError(f"checkpoint {init} is a {kind} policy; the settings say policy.encoder={wanted}")
    if kind == "frozen" and config.get("encoder") != ctx.settings.features.encoder:
        raise DataError(
            f"checkpoint {init} was trained on {config.get('encoder')} features, not {ctx.settings.features.encoder}"
        )
    return net.train()


def rce_options(rl: RLSettings, seed: int) -> dict[str, Any]:
    """train_rce's keyword arguments from the settings (one place, for the stage and the benchmarks)."""
    return {
        "epochs": rl.rce_epochs,
        "lr": rl.rce_lr,
        "tau_start": rl.rce_tau_start,
        "tau_end": rl.rce_tau_end,
        "batch_size": rl.batch_queries,
        "grad_clip": rl.grad_clip,
        "seed": seed,
    }


def grpo_options(rl: RLSettings, seed: int, lr: float | None = None) -> dict[str, Any]:
    """train_grpo's keyword arguments from the settings; `lr` overrides rl.grpo_lr (the dev sweep)."""
    return {
        "epochs": rl.grpo_epochs,
        "lr": rl.grpo_lr if lr is None else lr,
        "beta": rl.kl_beta,
        "clip_eps": rl.clip_eps,
        "batch_size": rl.batch_queries,
        "grad_clip": rl.grad_clip,
        "seed": seed,
    }


def _seed_init(ctx: StageContext, run_id: str, stage: str, init: str, seed: int) -> str:
    """Where seed s starts: its own earlier checkpoint of `stage` when the run trained one (GRPO of seed s starts from
    RCE of seed s), else the given init (all seeds of RCE start from the one SFT policy)."""
    own = checkpoint_prefix(run_id, stage, seed)
    return own if seed and ctx.store.exists(f"{own}/config.json") else init


def _pinned_version(ctx: StageContext, version: int | None, checkpoint: str) -> int | None:
    """The data version to train on: the one asked for, else the one `checkpoint` (this stage's earlier output, or
    the policy it starts from) was trained on, so a continued run trains on the data it started with even if a
    round has published a newer version since; else None (latest)."""
    config = ctx.checkpoint_store(checkpoint)
    if version is not None or not config.exists("config.json"):
        return version
    recorded = json.loads(config.get_bytes("config.json")).get("data_version")
    return int(recorded[1:]) if recorded else None


def run_rce(ctx: StageContext, run_id: str, init: str, version: int | None = None) -> str:
    groups, data_version = _groups(ctx, _pinned_version(ctx, version, checkpoint_prefix(run_id, "rce")))
    rl, uri = ctx.settings.rl, ""
    for seed in range(rl.seeds):
        out = checkpoint_prefix(run_id, "rce", seed)
        if done := _trained(ctx, out, init, data_version):
            uri = uri or done
            continue
        net, curve = _load_init(ctx, init), _Curve()
        train = ctx.policy_inputs(net, ctx.settings.data.train_split)
        guard, epochs = _guard(ctx, init, data_version), (f"rce seed {seed}", rl.rce_epochs)
        resume, on_epoch_end = _epoch_states(ctx, out, curve, guard, epochs)
        options = rce_options(rl, ctx.settings.run.seed + seed)
        train_rce(net, groups, train, train, **options, sink=curve, on_epoch_end=on_epoch_end, resume=resume)
        written = _save_final(
            ctx,
            net,
            out,
            curve,
            stage="rce",
            init=init,
            data_version=data_version,
            reward_mode=rl.reward_mode,
            queries=len(groups),
            seed=seed,
            **_training_settings(ctx),
        )
        uri = uri or written
        ctx.log.info("rce checkpoint written", uri=written, seed=seed, data_version=data_version, queries=len(groups))
    return uri


def _training_settings(ctx: StageContext) -> dict[str, Any]:
    """The training settings a checkpoint records, so the report reads them from artifacts, not its own settings."""
    rl, sft = ctx.settings.rl, ctx.settings.sft
    return {
        "settings": {
            "rl": rl.model_dump(mode="json"),
            "sft": sft.model_dump(mode="json"),
            "run_seed": ctx.settings.run.seed,
        }
    }


def run_grpo(ctx: StageContext, run_id: str, init: str, version: int | None = None) -> str:
    groups, data_version = _groups(ctx, _pinned_version(ctx, version, init))
    flat = int((groups.rewards.max(axis=1) == groups.rewards.min(axis=1)).sum())
    ctx.log.info("grpo groups", groups=len(groups), zero_reward_variance=flat)
    uri = ""
    for seed in range(ctx.settings.rl.seeds):
        start = _seed_init(ctx, run_id, "rce", init, seed)
        written = _grpo_seed(ctx, run_id, start, groups, data_version, seed, flat)
        uri = uri or written
    return uri


def _grpo_seed(
    ctx: StageContext, run_id: str, init: str, groups: GroupTable, data_version: str, seed: int, flat: int
) -> str:
    prefix = checkpoint_prefix(run_id, "grpo", seed)
    if done := _trained(ctx, prefix, init, data_version):
        return done
    net = _load_init(ctx, init)
    rl, train, curve = ctx.settings.rl, ctx.policy_inputs(net, ctx.settings.data.train_split), _Curve()
    provenance = {
        "stage": "grpo",
        "init": init,
        "data_version": data_version,
        "reward_mode": rl.reward_mode,
        "queries": len(groups),
        "groups_zero_reward_variance": flat,
        "seed": seed,
        **_training_settings(ctx),
    }

    def checkpoint_epoch(state: TrainState, model: PointerSelector) -> None:
        _save(ctx, model, f"{prefix}/epoch-{state.epoch:03d}", curve, epoch=state.epoch, **provenance)

    guard, epochs = _guard(ctx, init, data_version), (f"grpo seed {seed}", rl.grpo_epochs)
    resume, on_epoch_end = _epoch_states(ctx, prefix, curve, guard, epochs, checkpoint_epoch)
    options = grpo_options(rl, ctx.settings.run.seed + seed)
    train_grpo(net, groups, train, train, **options, sink=curve, on_epoch_end=on_epoch_end, resume=resume)
    uri = _save_final(ctx, net, prefix, curve, **provenance)
    ctx.log.info("grpo checkpoint written", uri=uri, seed=seed, data_version=data_version)
    return uri


def _epoch_states(
    ctx: StageContext,
    prefix: str,
    curve: _Curve,
    guard: dict[str, str],
    epochs: tuple[str, int],
    also: Callable[[TrainState, PointerSelector], None] | None = None,
) -> tuple[TrainState | None, Callable[[TrainState, PointerSelector], None]]:
    """(the state a killed run of this stage left, if it belongs to these settings, init and data; the callback that
    writes the state after every epoch, one atomic object beside the checkpoint, and reports the epoch as progress).
    epochs: (what is training, e.g. "grpo seed 1"; how many epochs it trains)."""
    key = f"{prefix}/{RESUME_FILE}"
    try:
        resume = load_state(ctx.store, key, guard)
    except IntegrityError as exc:  # starting over trains exactly what a clean run trains; resuming would not
        ctx.log.warning("the last epoch's state is damaged: training this stage from the start", problem=str(exc))
        resume = None
    if resume is not None:
        curve.rows = resume.curve
        ctx.log.info("continuing from the last epoch", uri=ctx.store.uri_for(prefix), epochs_done=resume.epoch)
    start = time.monotonic()

    def on_epoch_end(state: TrainState, model: PointerSelector) -> None:
        if also is not None:
            also(state, model)
        state.curve = curve.rows
        save_state(ctx.store, key, state, guard)
        progress_event(epochs[0], state.epoch, epochs[1], time.monotonic() - start, unit="epochs", **curve.loss())

    return resume, on_epoch_end


def _guard(ctx: StageContext, init: str, data_version: str) -> dict[str, str]:
    return {"settings_hash": ctx.settings_hash, "init": init, "data_version": data_version}


def _trained(ctx: StageContext, prefix: str, init: str | None, data_version: str | None) -> str:
    """The URI of the complete checkpoint this stage already wrote with the same settings, init and data (a rerun
    skips it), or "" when there is none. One made otherwise is a conflict: a run's checkpoint is never overwritten."""
    key = f"{prefix}/config.json"
    if not ctx.store.exists(key):
        return ""
    config = json.loads(ctx.store.get_bytes(key))
    recorded = {
        "settings_hash": config.get("settings_hash"),
        "init": config.get("init"),
        "data": config.get("data_version"),
    }
    wanted = {"settings_hash": ctx.settings_hash, "init": init, "data": data_version}
    differs = [k for k in wanted if wanted[k] is not None and recorded[k] != wanted[k]]
    uri = ctx.store.uri_for(prefix)
    if differs:
        raise ConflictError(
            f"{uri} was trained with another {' and '.join(differs)} ({', '.join(f'{recorded[k]}' for k in differs)}): "
            "a run's checkpoints are never overwritten; use another --run"
        )
    ctx.log.info("checkpoint exists with these settings, skipping", uri=uri)
    return uri
