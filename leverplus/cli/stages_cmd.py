"""`leverplus <stage>`: one command per pipeline stage. Each parses its arguments, binds run/round/shard to the
log context, and calls the stage function; pods under Argo and the local runner invoke exactly these."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from leverplus.ids import id_arg

Handler = Callable[[Any, argparse.Namespace], Any]


def _settings(args: argparse.Namespace) -> Any:
    """The settings a stage runs with. Started by hand on a run (or a `leverplus run`'s round) with no config file,
    it takes the settings recorded with that run, profile included, and applies only --set/--store and LEVERPLUS_*
    environment on top, saying which; a config file (--config, LEVERPLUS_CONFIG: what pods and the local runner
    give) is used as it is."""
    import os

    from leverplus.cli import _parse_overrides, load_cli_settings
    from leverplus.config import load_recorded_settings, masked_overrides
    from leverplus.log import get_logger
    from leverplus.run_record import recorded_settings
    from leverplus.store import open_store

    extra = {"store.uri": args.store} if getattr(args, "store", None) else {}
    settings = load_cli_settings(args, extra)
    run_id, round_id = getattr(args, "run", None), getattr(args, "round", None)
    if getattr(args, "config", None) or os.environ.get("LEVERPLUS_CONFIG") or (run_id is None and round_id is None):
        return settings
    found = recorded_settings(open_store(settings.store.uri, settings.store), run_id, round_id)
    if found is None:
        return settings
    overrides = _parse_overrides(getattr(args, "overrides", []) or []) | extra
    settings = load_recorded_settings(found[1], {"store.uri": settings.store.uri, **overrides})
    get_logger().info("using the settings recorded with the run", run=found[0], overrides=masked_overrides(overrides))
    return settings


def _context(args: argparse.Namespace, stage: str) -> Any:
    from leverplus.log import bind
    from leverplus.stages.context import StageContext

    settings = _settings(args)
    bind(
        **{
            k: v
            for k, v in (
                ("run", getattr(args, "run", None)),
                ("round", getattr(args, "round", None)),
                ("shard", getattr(args, "shard", None)),
            )
            if v is not None
        }
    )
    return StageContext(settings, stage)


def _stage(
    commands: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    name: str,
    help_text: str,
    handler: Handler,
    *options: tuple[tuple[str, ...], dict[str, Any]],
) -> None:
    parser = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
    for flags, kwargs in options:
        parser.add_argument(*flags, **kwargs)

    def run(args: argparse.Namespace) -> Any:
        ctx = _context(args, name)
        result = handler(ctx, args)
        _record_settings(ctx, args, name)  # after: a stage refused (a settings conflict) leaves the record as it was
        return result

    parser.set_defaults(handler=run)


def _record_settings(ctx: Any, args: argparse.Namespace, stage: str) -> None:
    """Every stage of a run or round writes the settings it resolved into the store (shard 0 speaks for its
    fan-out), so a run under Argo has them as a local run does, and the report can cite them."""
    from leverplus.config import settings_to_yaml
    from leverplus.stages.layout import stage_settings_key

    run_id, round_id = getattr(args, "run", None), getattr(args, "round", None)
    if (run_id is None and round_id is None) or getattr(args, "shard", 0) not in (0, None):
        return
    ctx.store.put_bytes(stage_settings_key(stage, run_id, round_id), settings_to_yaml(ctx.settings).encode())


RUN = (
    ("--run",),
    {"required": True, "type": id_arg("run id"), "metavar": "RUN_ID", "help": "run id (letters, digits, . _ -)"},
)
ROUND = (
    ("--round",),
    {"required": True, "type": id_arg("round id"), "metavar": "ROUND_ID", "help": "round id (letters, digits, . _ -)"},
)
SHARD = (("--shard",), {"required": True, "type": int, "help": "shard id from the plan's JSON list"})
FORCE = (("--force",), {"action": "store_true", "help": "redo even if the output exists"})


def _plan(ctx: Any, args: argparse.Namespace) -> None:
    from leverplus.errors import ConfigError
    from leverplus.stages.layout import plan_key
    from leverplus.stages.plan import eval_plan_key, run_plan, sft_plan_key

    if args.kind == "rl":
        if not args.round:
            raise ConfigError("plan --kind rl needs --round")
        plan = run_plan(ctx, "rl", plan_key(args.round), args.round, args.force)
    else:
        if not args.run:
            raise ConfigError(f"plan --kind {args.kind} needs --run")
        key = sft_plan_key(args.run) if args.kind == "sft" else eval_plan_key(args.run)
        plan = run_plan(ctx, args.kind, key, args.run, args.force)
    print(json.dumps(plan.shard_ids()))


def _verify(ctx: Any, args: argparse.Namespace) -> None:
    from leverplus.errors import IntegrityError
    from leverplus.stages.verify import run_verify

    checked, problems, stale = run_verify(ctx)
    for problem in problems:
        print(f"PROBLEM {problem}")
    for line in stale:
        print(f"STALE {line}")
    hint = " (`leverplus store clean` removes what is stale)" if stale else ""
    print(f"{ctx.store.uri}: {checked} objects checked, {len(problems)} problem(s), {len(stale)} stale{hint}")
    if problems:
        raise IntegrityError(f"{len(problems)} problem(s) in {ctx.store.uri}, first: {problems[0]}")


def _print(value: Any) -> None:
    print(value if isinstance(value, str) else json.dumps(value))


# One handler per stage: a lazy import (so `--help` stays instant) and a plain call that editors can follow.
def _features(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.features import run_features

    return run_features(ctx, args.force)


def _score(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.score import run_score

    return run_score(ctx, args.round, args.shard, args.policy, args.force)


def _filter(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.filter import run_filter

    return run_filter(ctx, args.round)


def _export(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.balanced import export_merged

    return export_merged(ctx, args.data_version)


def _sft_data(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.sft_data import run_sft_data

    return run_sft_data(ctx, args.run, args.shard, args.force)


def _sft(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.train import run_sft

    return run_sft(ctx, args.run)


def _rce(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.train import run_rce

    return run_rce(ctx, args.run, args.init, args.data_version)


def _grpo(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.train import run_grpo

    return run_grpo(ctx, args.run, args.init, args.data_version)


def _eval(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.evaluate import run_eval

    return run_eval(ctx, args.run, args.shard, args.policy, args.sft, args.rce, args.force)


def _growth_check(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.growth import run_growth_check

    return run_growth_check(ctx, args.run)


def _report(ctx: Any, args: argparse.Namespace) -> Any:
    from leverplus.stages.report import run_report

    return run_report(ctx, args.run, args.allow_prompt_mismatch, args.force)


def _printing(stage: Handler) -> Handler:
    def handler(ctx: Any, args: argparse.Namespace) -> None:
        _print(stage(ctx, args))

    return handler


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    _stage(
        commands,
        common,
        "features",
        "compute each split's embeddings once and store them",
        _printing(_features),
        FORCE,
    )
    _stage(
        commands,
        common,
        "plan",
        "choose queries, build pools, shard them; print the shard ids as JSON",
        _plan,
        (("--kind",), {"choices": ("rl", "sft", "eval"), "required": True, "help": "what the plan is for"}),
        (("--round",), {"type": id_arg("round id"), "metavar": "ROUND_ID", "help": "round id (kind rl)"}),
        (("--run",), {"type": id_arg("run id"), "metavar": "RUN_ID", "help": "run id (kinds sft and eval)"}),
        FORCE,
    )
    _stage(
        commands,
        common,
        "score",
        "score one shard of a round's RL queries with the LVLM",
        _printing(_score),
        ROUND,
        SHARD,
        (("--policy",), {"metavar": "URI", "help": "policy checkpoint that proposes candidates (else random only)"}),
        FORCE,
    )
    _stage(
        commands,
        common,
        "filter",
        "join a round's shards, keep balanced queries, publish the next version",
        _printing(_filter),
        ROUND,
    )
    _stage(
        commands,
        common,
        "export",
        "write the lab's interchange file rl-data/balanced/rl_data_balanced_merged.json for a balanced version",
        _printing(_export),
        (("--data-version",), {"type": int, "help": "balanced-set version (default: latest)"}),
        (("--store",), {"metavar": "URI", "help": "store holding the set (default: the configured store.uri)"}),
    )
    _stage(
        commands,
        common,
        "sft-data",
        "InfoScore beam search over one shard of SFT anchors",
        _printing(_sft_data),
        RUN,
        SHARD,
        FORCE,
    )
    _stage(commands, common, "sft", "train the selector on the InfoScore beams", _printing(_sft), RUN)
    _stage(
        commands,
        common,
        "rce",
        "reward-weighted cross-entropy on the balanced set",
        _printing(_rce),
        RUN,
        (("--init",), {"required": True, "metavar": "URI", "help": "starting checkpoint (the SFT policy)"}),
        (("--data-version",), {"type": int, "help": "balanced-set version (default: latest)"}),
    )
    _stage(
        commands,
        common,
        "grpo",
        "offline GRPO on the balanced set's groups",
        _printing(_grpo),
        RUN,
        (("--init",), {"required": True, "metavar": "URI", "help": "starting checkpoint (the RCE policy)"}),
        (("--data-version",), {"type": int, "help": "balanced-set version (default: latest)"}),
    )
    _stage(
        commands,
        common,
        "eval",
        "answer one shard of evaluation questions with every system and shot count",
        _printing(_eval),
        RUN,
        SHARD,
        (("--policy",), {"required": True, "metavar": "URI", "help": "trained policy checkpoint"}),
        (("--sft",), {"required": True, "metavar": "URI", "help": "SFT policy checkpoint (the baseline)"}),
        (("--rce",), {"metavar": "URI", "help": "RCE policy checkpoint (the rce system; omitted: not evaluated)"}),
        FORCE,
    )
    _stage(
        commands,
        common,
        "growth-check",
        "print true when the balanced set has grown enough to retrain",
        _printing(_growth_check),
        (
            ("--run",),
            {
                "type": id_arg("run id"),
                "metavar": "RUN_ID",
                "help": "the run that would retrain: its decision is recorded once and its own checkpoints never count",
            },
        ),
    )
    _stage(
        commands,
        common,
        "verify",
        "check every version, shard, checkpoint and feature file of a store; exit 2 on any problem",
        _verify,
        (("--store",), {"metavar": "URI", "help": "store to check (default: the configured store.uri)"}),
    )
    _stage(
        commands,
        common,
        "report",
        "score the evaluation and write report.md, report.html, plots, metrics.json",
        _printing(_report),
        RUN,
        (("--force",), {"action": "store_true", "help": "rewrite a finished report (e.g. with newer history)"}),
        (
            ("--allow-prompt-mismatch",),
            {"action": "store_true", "help": "compare with earlier runs whose prompt hash differs"},
        ),
    )
