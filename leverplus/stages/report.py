"""`leverplus report`: join the evaluation shards, score every system and shot count with 95 % bootstrap
intervals, test the trained policy against the SFT policy on the same questions, and write
runs/<run-id>/report/{report.md, report.html, *.png, metrics.json} plus predictions per system and shot, and last
a manifest.json with every report file's sha256."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from leverplus import __version__
from leverplus.errors import DataError, IntegrityError
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.metrics import bootstrap_ci, paired_bootstrap
from leverplus.records import EvalRecord
from leverplus.report.document import Document, Heading, Image, Paragraph, Table
from leverplus.report.plots import accuracy_vs_shots, history_plot, ratio_histogram
from leverplus.stages.context import StageContext
from leverplus.stages.filter import RATIO_BINS, latest_version
from leverplus.stages.layout import BALANCED, check_id, checkpoint_prefix, eval_prefix, report_prefix, shard_key
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
    stats = json.loads(ctx.store.get_bytes(f"{BALANCED}/{version}.manifest.json"))["stats"]
    return {
        "queries": stats["queries"],
        "candidates": stats["candidates"],
        "positive_ratio": round(100 * stats["positive_ratio"], 2),
        "version": version,
    }


def _versions(ctx: StageContext) -> list[dict[str, Any]]:
    rows = []
    for key in ctx.store.list(f"{BALANCED}/"):
        if key.endswith(".manifest.json"):
            stats = json.loads(ctx.store.get_bytes(key))["stats"]
            rows.append({"version": key.rsplit("/", 1)[1].split(".")[0], **stats})
    return sorted(rows, key=lambda r: int(r["version"][1:]))


def read_report_file(ctx: StageContext, run_id: str, name: str) -> bytes:
    """A file of a finished report, verified against the report's manifest."""
    prefix = report_prefix(run_id)
    return ctx.read_verified(f"{prefix}/{name}", f"{prefix}/manifest.json")[0]


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
        rows.append(
            {
                "run_id": m["run_id"],
                "queries": m["data"]["queries"],
                "shots": {k: v["accuracy"] for k, v in m["eval"].get("policy", {}).items()},
            }
        )
    return sorted(rows, key=lambda r: r["run_id"]), skipped


def _write_predictions(ctx: StageContext, run_id: str, grouped: dict[tuple[str, int], list[EvalRecord]]) -> None:
    for (system, k), records in grouped.items():
        prefix = f"{eval_prefix(run_id)}/{system}/shot{k}"
        ctx.put_jsonl(f"{prefix}/predictions.jsonl", records)
        ctx.store.put_bytes(
            f"{prefix}/results.json",
            json.dumps([{"question_id": r.question_id, "answer": r.prediction} for r in records]).encode(),
        )


def _verdict(paired: dict[str, Any]) -> str:
    if paired["significant"]:
        word = "better" if paired["delta"] > 0 else "worse"
        return f"**significantly {word}** (p = {paired['p_value']:.3f})"
    return f"within noise: the 95 % interval of the paired difference includes 0 (p = {paired['p_value']:.3f})"


def run_report(ctx: StageContext, run_id: str, allow_prompt_mismatch: bool = False) -> str:
    check_id(run_id, "run id")
    s = ctx.settings
    grouped = _load_records(ctx, run_id)
    eval_split = ctx.split(s.data.eval_split)
    answer_types = {r.question_id: r.answer_type for r in eval_split}
    eval_metrics: dict[str, dict[str, Any]] = defaultdict(dict)
    for (system, k), records in grouped.items():
        eval_metrics[system][str(k)] = _score(ctx, records, answer_types)
    paired = {}
    for k in [k for k in s.eval.shots if k > 0]:
        if ("policy", k) in grouped and ("sft", k) in grouped:
            p = paired_bootstrap(
                [r.accuracy for r in grouped["policy", k]],
                [r.accuracy for r in grouped["sft", k]],
                s.eval.bootstrap_samples,
                s.eval.seed,
            )
            paired[str(k)] = {
                "delta": round(100 * p.delta, 2),
                "ci95": [round(100 * x, 2) for x in p.ci95],
                "p_value": round(p.p_value, 4),
                "significant": p.significant,
            }
    data = _data_stats(ctx, run_id)
    metrics = {
        "run_id": run_id,
        "data": data,
        "eval": dict(eval_metrics),
        "paired_policy_vs_sft": paired,
        "metric_mode": s.eval.metric_mode,
        "pool": {"sampler": s.pool.sampler, "size": s.pool.size},
        "settings_hash": ctx.settings_hash,
        "prompt_hash": PROMPT_HASH,
        "code_version": __version__,
        "lvlm": {"backend": s.lvlm.backend, "model": s.lvlm.model if s.lvlm.backend != "sim" else "sim"},
    }
    history, skipped = _history(ctx, run_id, allow_prompt_mismatch)
    prefix = report_prefix(run_id)
    _write_predictions(ctx, run_id, grouped)
    versions = _versions(ctx)
    scored_hist = _scored_histogram(ctx)
    doc = _document(ctx, metrics, versions, history, skipped, with_histogram=bool(scored_hist))
    files = {"accuracy_vs_shots.png": accuracy_vs_shots(metrics["eval"])}
    if scored_hist:
        files["positive_ratio.png"] = ratio_histogram(scored_hist, (s.rl.min_pos_ratio, s.rl.max_pos_ratio))
    runs = [
        *({"run_id": h["run_id"], "queries": h["queries"], "shot1": h["shots"].get("1", 0)} for h in history),
        {
            "run_id": run_id,
            "queries": data["queries"],
            "shot1": eval_metrics.get("policy", {}).get("1", {}).get("accuracy", 0),
        },
    ]
    files["history.png"] = history_plot(runs)
    files |= {"report.md": doc.markdown().encode(), "report.html": doc.html().encode()}
    outputs = {name: ctx.store.put_bytes(f"{prefix}/{name}", data).sha256 for name, data in files.items()}
    outputs["metrics.json"] = ctx.put_json(f"{prefix}/metrics.json", metrics)
    inputs = {"eval": ctx.store.uri_for(eval_prefix(run_id)), "balanced": f"v{latest_version(ctx)}"}
    # Last: a report with a manifest is complete, and every file in it can be checked against it.
    ctx.put_json(f"{prefix}/manifest.json", ctx.manifest("report", inputs=inputs, outputs=outputs))
    ctx.log.info("report written", uri=ctx.store.uri_for(f"{prefix}/report.md"))
    return ctx.store.uri_for(f"{prefix}/report.md")


def _scored_histogram(ctx: StageContext) -> list[int]:
    """Positive-ratio histogram over every query scored in this store (accepted or rejected)."""
    hist = [0] * RATIO_BINS
    for key in ctx.store.list("rounds/"):
        if key.endswith("/manifest.json"):
            stats = json.loads(ctx.store.get_bytes(key)).get("stats", {})
            hist = [
                a + b
                for a, b in zip(hist, stats.get("scored", {}).get("ratio_histogram", [0] * RATIO_BINS), strict=True)
            ]
    return hist if any(hist) else []


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['accuracy']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"


def _document(
    ctx: StageContext,
    metrics: dict,
    versions: list[dict],
    history: list[dict],
    skipped: list[str],
    with_histogram: bool,
) -> Document:
    s, ev, data = ctx.settings, metrics["eval"], metrics["data"]
    doc = Document(f"Lever-Plus report — {metrics['run_id']}")
    n = next(iter(next(iter(ev.values())).values()))["n"]
    doc.add(
        Paragraph(
            f"{n} evaluation questions from the `{s.data.eval_split}` split ({s.eval.selection} by "
            f"question_id); accuracy is the **{s.eval.metric_mode}** VQA metric in percent with 95 % "
            f"bootstrap intervals ({s.eval.bootstrap_samples} resamples). Pools: sampler "
            f"`{s.pool.sampler}`, size {s.pool.size}, features `{s.features.encoder}`. LVLM: "
            f"`{metrics['lvlm']['model']}`."
        )
    )
    doc.add(
        Heading("Data"),
        Table(
            ["version", "round", "queries", "candidates", "positive ratio", "added"],
            [
                [
                    v["version"],
                    v.get("round_id", ""),
                    str(v["queries"]),
                    str(v["candidates"]),
                    f"{100 * v['positive_ratio']:.1f} %",
                    str(v.get("added_queries", "")),
                ]
                for v in versions
            ],
        ),
    )
    doc.add(
        Paragraph(
            f"This run trained on balanced set **{data['version']}**: {data['queries']} queries, "
            f"{data['candidates']} candidates, {data['positive_ratio']:.1f} % positive "
            f"(band {s.rl.min_pos_ratio:.2f}–{s.rl.max_pos_ratio:.2f}, reward `{s.rl.reward_mode}`)."
        )
    )
    if with_histogram:
        doc.add(Image("positive_ratio.png", "positive-ratio histogram"))
    rows = []
    for k, p in metrics["paired_policy_vs_sft"].items():
        rows.append(
            [
                k,
                _fmt(ev["sft"][k]),
                _fmt(ev["policy"][k]),
                f"{p['delta']:+.2f}",
                f"[{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]",
                _verdict(p),
            ]
        )
    doc.add(
        Heading("Results: trained policy vs the SFT policy (same questions)"),
        Table(["shots", "SFT (baseline)", "policy (RCE → GRPO)", "Δ", "Δ 95 % CI", "verdict"], rows),
    )
    systems = [x for x in ("policy", "sft", "similarity", "random") if x in ev]
    shots = sorted({k for x in systems for k in ev[x]}, key=int)
    doc.add(
        Heading("All systems"),
        Table(
            ["system", *[f"shot {k}" for k in shots]],
            [[x, *[_fmt(ev[x][k]) if k in ev[x] else "" for k in shots]] for x in systems],
        ),
    )
    if "zero-shot" in ev:
        doc.add(Paragraph(f"Zero-shot: {_fmt(ev['zero-shot']['0'])}."))
    types = sorted({t for x in systems for k in ev[x] for t in ev[x][k]["per_answer_type"]})
    doc.add(
        Heading("Per answer type (policy)", 3),
        Table(
            ["shots", *types],
            [
                [k, *[f"{ev['policy'][k]['per_answer_type'].get(t, 0):.2f}" for t in types]]
                for k in sorted(ev.get("policy", {}), key=int)
            ],
        ),
    )
    doc.add(Image("accuracy_vs_shots.png", "accuracy vs shots"))
    doc.add(Heading("History of runs in this store"))
    if history:
        doc.add(
            Table(
                ["run", "balanced queries", *[f"policy shot {k}" for k in shots]],
                [[h["run_id"], str(h["queries"]), *[f"{h['shots'].get(k, 0):.2f}" for k in shots]] for h in history],
            )
        )
    else:
        doc.add(Paragraph("No earlier runs with the same prompt hash."))
    if skipped:
        doc.add(Paragraph(f"Not compared: {', '.join(skipped)}."))
    doc.add(Image("history.png", "balanced-set size and accuracy across runs"))
    doc.add(
        Heading("Provenance"),
        Table(
            ["item", "value"],
            [
                ["settings", f"`runs/{metrics['run_id']}/settings.yaml` (hash `{metrics['settings_hash'][:16]}`)"],
                ["prompt hash", f"`{metrics['prompt_hash']}`"],
                ["code version", metrics["code_version"]],
                ["metric mode", metrics["metric_mode"]],
                ["reward mode", s.rl.reward_mode],
                ["RCE", f"{s.rl.rce_epochs} epochs, lr {s.rl.rce_lr}"],
                ["GRPO", f"{s.rl.grpo_epochs} epochs, lr {s.rl.grpo_lr}, KL β {s.rl.kl_beta}, clip ε {s.rl.clip_eps}"],
            ],
        ),
    )
    return doc
