"""Where everything lives in the store (DESIGN §4), in one place:

features/<encoder>/<split>.safetensors
rounds/<round-id>/plan.json, plan/<nnnnn>.json + plan/index.json (each fan-out pod's part of the plan), queries.json,
    shards/<nnnnn>.jsonl, manifest.json, settings/<stage>.yaml (sft-data/ and eval/ plans have the same parts)
rl-data/balanced/segments/<round-id>.jsonl + .ids.json, v<n>.manifest.json, latest, rl_data_balanced_merged.json
    (and v<n>.jsonl: versions from before segments, stages/balanced.py)
runs/<run-id>/run.json + settings.yaml (`leverplus run`), settings/<stage>.yaml (every stage), growth-check.json,
    sft-data/..., checkpoints/<stage>/... and checkpoints/seed-<s>/<stage>/..., eval/..., report/...
"""

from __future__ import annotations

from leverplus.ids import check_id

__all__ = [
    "BALANCED",
    "LEASE",
    "MERGED_EXPORT",
    "check_id",
    "checkpoint_prefix",
    "eval_prefix",
    "plan_index_key",
    "plan_key",
    "plan_part_key",
    "queries_key",
    "report_prefix",
    "round_prefix",
    "run_prefix",
    "segment_key",
    "sft_prefix",
    "shard_key",
    "stage_settings_key",
]

BALANCED = "rl-data/balanced"
MERGED_EXPORT = f"{BALANCED}/rl_data_balanced_merged.json"
LEASE = f"{BALANCED}/.lease"  # exists while a round publishes a version


def plan_part_key(plan: str, shard: int) -> str:
    """One shard of the plan at key `plan` (.../plan.json), with the plan's header: what a fan-out pod reads."""
    return f"{plan.removesuffix('.json')}/{shard:05d}.json"


def plan_index_key(plan: str) -> str:
    """The sha256 of each of a plan's parts, written after the plan (records.PlanIndex)."""
    return f"{plan.removesuffix('.json')}/index.json"


def segment_key(round_id: str) -> str:
    """The balanced groups a round added to the set, written once (stages/balanced.py)."""
    return f"{BALANCED}/segments/{check_id(round_id, 'round id')}.jsonl"


def shard_key(prefix: str, shard: int) -> str:
    return f"{prefix}/shards/{shard:05d}.jsonl"


def round_prefix(round_id: str) -> str:
    return f"rounds/{check_id(round_id, 'round id')}"


def plan_key(round_id: str) -> str:
    return f"{round_prefix(round_id)}/plan.json"


def queries_key(round_id: str) -> str:
    """The round's planned question ids (sorted JSON list): later rounds exclude them without reading pools."""
    return f"{round_prefix(round_id)}/queries.json"


def run_prefix(run_id: str) -> str:
    return f"runs/{check_id(run_id, 'run id')}"


def stage_settings_key(stage: str, run_id: str | None = None, round_id: str | None = None) -> str:
    """Where a stage records the resolved settings it ran with (every stage, under every executor)."""
    prefix = run_prefix(run_id) if run_id is not None else round_prefix(round_id or "")
    return f"{prefix}/settings/{stage}.yaml"


def sft_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/sft-data"


def eval_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/eval"


def checkpoint_prefix(run_id: str, stage: str, seed: int = 0) -> str:
    """Seed 0 is the run's own checkpoint; extra training seeds (rl.seeds) live under checkpoints/seed-<s>/."""
    seed_folder = f"seed-{seed}/" if seed else ""
    return f"{run_prefix(run_id)}/checkpoints/{seed_folder}{stage}"


def report_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}/report"
