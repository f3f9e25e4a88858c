"""`leverplus report`: join the evaluation shards, score every system and shot count with 95 % bootstrap
intervals, test the trained policy against the SFT, RCE and similarity systems on the same questions (Holm-corrected
across shot counts), add the seed spread, noise-free ceilings (sim backend), training curves and provenance read
from the artifacts, and write
runs/<run-id>/report/{report.md, report.html, *.png, metrics.json} plus predictions per system and shot, and last
a manifest.json with every report file's sha256."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from leverplus import __version__
from leverplus.catalog import Catalog
from leverplus.errors import DataError, IntegrityError
from leverplus.lvlm import lvlm_id
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.metrics import bootstrap_ci
from leverplus.records import EvalRecord
from leverplus.report.content import build_document
from leverplus.report.plots import accuracy_vs_shots, history_plot, noise_free_plot, ratio_histogram, training_plot
from leverplus.report.science import (
    checkpoint_configs,
    expected_accuracies,
    noise_free_paired,
    paired_families,
    seed_spread,
    sim_ceilings,
    training_curves,
)
from leverplus.stages.balanced import RATIO_BINS, latest_version
from leverplus.stages.context import StageContext
from leverplus.stages.layout import check_id, checkpoint_prefix, eval_prefix, report_prefix, shard_key
from leverplus.stages.shards import read_shard

__all__ = ["run_report"]


def _load_records(ctx: StageContext, run_id: str) -> dict[tuple[str, int], list[EvalRecord]]:
    prefix = eval_prefix(run_id)
    plan = ctx.read_plan(f"{prefix}/plan.json")
    missing = [i for i in plan.shard_ids() if not ctx.store.exists(shard_key(prefix, i))]
    if missing:
        raise DataError(f"run {run_id}: eval shards {missing[:10]} have no output yet; run `leverplus eval` first")
    grouped: dict[tuple[str, int], list[EvalRecord]] = defaultdict(list)
    for i in plan.shard_ids():
        for line in read_shard(ctx, shard_key(prefix, i)).splitlines():
            r = EvalRecord.model_validate_json(line)
            grouped[r.system, r.shots].append(r)
    return {k: sorted(v, key=lambda r: r.question_id) for k, v in sorted(grouped.items())}


def _score(ctx: StageContext, records: list[EvalRecord], answer_types: dict[int, str]) -> dict[str, Any]:
    accs = [r.accuracy for r in records]
    lo, hi = bootstrap_ci(accs, ctx.settings.eval.bootstrap_samples, ctx.settings.eval.seed)
    by_type: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_type[answer_types[r.question_id]].append(r.accuracy)
    return {
        "accuracy": round(100 * sum(accs) / len(accs), 2),
        "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
        "n": len(accs),
        "per_answer_type": {t: round(100 * sum(v) / len(v), 2) for t, v in sorted(by_type.items())},
    }


def _data_stats(ctx: StageContext, run_id: str) -> dict[str, Any]:
    rce_config = f"{checkpoint_prefix(run_id, 'rce')}/config.json"
    version = json.loads(ctx.store.get_bytes(rce_config))["data_version"] if ctx.store.exists(rce_config) else None
    if version is None:
        return {"queries": 0, "candidates": 0, "positive_ratio": 0.0, "version": None}
    stats = Catalog(ctx.store).version(version)
    return {
        "queries": stats.queries,
        "candidates": stats.candidates,
        "positive_ratio": round(100 * stats.positive_ratio, 2),
        "version": version,
    }


def _versions(ctx: StageContext) -> list[dict[str, Any]]:
    return [{"version": name, **v.model_dump()} for name, v in Catalog(ctx.store).versions().items()]


def read_report_file(ctx: StageContext, run_id: str, name: str) -> bytes:
    """A file of a finished report, verified against the report's manifest."""
    prefix = report_prefix(run_id)
    return ctx.read_verified(f"{prefix}/{name}", f"{prefix}/manifest.json")[0]


def _history_row(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": m["run_id"],
        "queries": m["data"]["queries"],
        "version": m["data"].get("version"),
        "sft": m.get("training", {}).get("sft", "?"),
        "shots": dict(m["eval"].get("policy", {})),
    }


def _history(ctx: StageContext, run_id: str, allow_prompt_mismatch: bool) -> tuple[list[dict], list[str]]:
    """Earlier runs' policy accuracy. Runs whose report fails verification, or (unless allowed) used another
    prompt, are listed as not compared rather than silently dropped or allowed to block this report."""
    rows, skipped = [], []
    for key in ctx.store.list("runs/"):
        other = key.split("/")[1]
        if not key.endswith("/report/manifest.json") or other == run_id:
            continue
        try:
            m = json.loads(read_report_file(ctx, other, "metrics.json"))
        except IntegrityError as exc:
            ctx.log.warning("earlier report fails verification, not compared", run=other, error=str(exc))
            skipped.append(f"{other} (fails verification)")
            continue
        if m.get("prompt_hash") != PROMPT_HASH and not allow_prompt_mismatch:
            skipped.append(f"{m['run_id']} (different prompt hash)")
            continue
        rows.append(_history_row(m))
    return sorted(rows, key=lambda r: r["run_id"]), skipped


def _write_predictions(ctx: StageContext, run_id: str, grouped: dict[tuple[str, int], list[EvalRecord]]) -> None:
    for (system, k), records in grouped.items():
        prefix = f"{eval_prefix(run_id)}/{system}/shot{k}"
        ctx.put_jsonl(f"{prefix}/predictions.jsonl", records)
        ctx.store.put_bytes(
            f"{prefix}/results.json",
            json.dumps([{"question_id": r.question_id, "answer": r.prediction} for r in records]).encode(),
        )


def _training(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Training settings as the policy's checkpoint recorded them (not this report step's settings)."""
    grpo = configs.get("grpo", configs.get("rce", {}))
    rl = grpo.get("settings", {}).get("rl", {})
    keys = ("rce_epochs", "rce_lr", "grpo_epochs", "grpo_lr", "kl_beta", "clip_eps", "seeds", "candidates_per_query")
    return {
        **{k: rl.get(k) for k in keys},
        "reward_mode": grpo.get("reward_mode"),
        "data_version": grpo.get("data_version"),
        "sft": configs.get("rce", {}).get("init"),
        "policy_encoder": _policy_encoder(grpo),
    }


def _policy_encoder(config: dict[str, Any]) -> dict[str, Any]:
    """What the trained policy saw: stored features, or CLIP towers with LoRA adapters (from its checkpoint)."""
    towers = config.get("towers")
    if towers is None:
        return {"encoder": "frozen", "features": config.get("encoder")}
    return {"encoder": towers["encoder"], "base_model": towers["base_model"], "lora_rank": towers["lora"]["rank"],
            "lora_alpha": towers["lora"]["alpha"], "trainable_parameters": towers["trainable_parameters"],
            **({"trained_on": config["placement"]} if "placement" in config else {})}  # fmt: skip


def run_report(ctx: StageContext, run_id: str, allow_prompt_mismatch: bool = False, force: bool = False) -> str:
    check_id(run_id, "run id")
    done = f"{report_prefix(run_id)}/manifest.json"
    if ctx.store.exists(done) and not force:  # complete (the manifest is written last): a retried step keeps it
        ctx.log.info("report exists, skipping (--force rewrites it)", uri=ctx.store.uri_for(done))
        return ctx.store.uri_for(f"{report_prefix(run_id)}/report.md")
    s = ctx.settings
    grouped = _load_records(ctx, run_id)
    plan = ctx.read_plan(f"{eval_prefix(run_id)}/plan.json")
    answer_types = {r.question_id: r.answer_type for r in ctx.split(plan.split)}
    eval_metrics: dict[str, dict[str, Any]] = defaultdict(dict)
    for (system, k), records in grouped.items():
        eval_metrics[system][str(k)] = _score(ctx, records, answer_types)
    shots = sorted({k for _, k in grouped if k > 0})
    configs = checkpoint_configs(ctx, run_id)
    questions = [q for shard in plan.shards for q in shard]
    expected = expected_accuracies(ctx, plan.split, grouped, shots)
    metrics = {
        "run_id": run_id,
        "data": _data_stats(ctx, run_id),
        "eval": dict(eval_metrics),
        "paired": paired_families(ctx, grouped, shots),
        "seeds": seed_spread(eval_metrics),
        "ceilings": sim_ceilings(ctx, plan.split, questions, expected, shots),
        "paired_noise_free": noise_free_paired(ctx, expected, shots),
        "curves": training_curves(ctx, {stage: c["uri"] for stage, c in configs.items()}),
        "training": _training(configs),
        "checkpoints": {stage: c["uri"] for stage, c in configs.items()},
        "metric_mode": s.eval.metric_mode,
        "eval_plan": {
            "split": plan.split,
            "sampler": plan.sampler,
            "pool_size": plan.pool_size,
            "encoder": plan.encoder,
            "questions": len(questions),
        },
        "settings_files": sorted(k for k in ctx.store.list(f"runs/{run_id}/settings/") if k.endswith(".yaml")),
        "settings_hash": ctx.settings_hash,
        "prompt_hash": PROMPT_HASH,
        "code_version": __version__,
        "lvlm": lvlm_id(s.lvlm),
    }
    history, skipped = _history(ctx, run_id, allow_prompt_mismatch)
    history.append(_history_row(metrics))
    prefix = report_prefix(run_id)
    _write_predictions(ctx, run_id, grouped)
    scored_hist = _scored_histogram(ctx)
    doc = build_document(metrics, _versions(ctx), history, skipped, with_histogram=bool(scored_hist))
    best = {k: v["expected_accuracy"]["best in pool"] for k, v in metrics["ceilings"].items()}
    files = {"accuracy_vs_shots.png": accuracy_vs_shots(metrics["eval"], best)}
    if metrics["ceilings"]:
        files["noise_free.png"] = noise_free_plot(metrics["ceilings"])
    if scored_hist:
        files["positive_ratio.png"] = ratio_histogram(scored_hist, (s.rl.min_pos_ratio, s.rl.max_pos_ratio))
    if metrics["curves"]:
        files["training.png"] = training_plot(metrics["curves"])
    runs = [
        {"run_id": h["run_id"], "queries": h["queries"], "shot1": h["shots"].get("1", {}).get("accuracy", 0)}
        for h in history
    ]
    files["history.png"] = history_plot(runs)
    files |= {"report.md": doc.markdown().encode(), "report.html": doc.html().encode()}
    outputs = {name: ctx.store.put_bytes(f"{prefix}/{name}", data).sha256 for name, data in files.items()}
    outputs["metrics.json"] = ctx.put_json(f"{prefix}/metrics.json", metrics)
    inputs = {"eval": ctx.store.uri_for(eval_prefix(run_id)), "balanced": f"v{latest_version(ctx.store)}"}
    # Last: a report with a manifest is complete, and every file in it can be checked against it.
    ctx.put_json(f"{prefix}/manifest.json", ctx.manifest("report", inputs=inputs, outputs=outputs))
    ctx.log.info("report written", uri=ctx.store.uri_for(f"{prefix}/report.md"))
    return ctx.store.uri_for(f"{prefix}/report.md")


def _scored_histogram(ctx: StageContext) -> list[int]:
    """Positive-ratio histogram over every query scored in this store (accepted or rejected)."""
    hist = [0] * RATIO_BINS
    catalog = Catalog(ctx.store)
    for round_id in catalog.round_ids():
        if (stats := catalog.round(round_id)) is not None:
            hist = [a + b for a, b in zip(hist, stats.scored.ratio_histogram, strict=True)]
    return hist if any(hist) else []
