"""What the report computes beyond accuracies: corrected paired tests, the seed spread, noise-free ceilings of the
simulated LVLM, per-epoch training curves, and provenance read from the artifacts that made the numbers.

Each function reads the store through a StageContext and returns plain data for metrics.json and the document.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

import numpy as np

from leverplus.metrics import holm_paired
from leverplus.records import EvalRecord, PlannedQuery
from leverplus.stages.context import StageContext
from leverplus.stages.layout import checkpoint_prefix

__all__ = [
    "COMPARED",
    "HEURISTICS",
    "checkpoint_configs",
    "expected_accuracies",
    "noise_free_paired",
    "paired_families",
    "seed_spread",
    "sim_ceilings",
    "training_curves",
]

HEURISTICS = ("similarity", "mmr", "retrieval")  # the non-learned selectors a practitioner would use instead
MIN_HEADROOM = 0.5  # points: below it a share of the headroom is a ratio of rounding noise
COMPARED = ("sft", "rce", *HEURISTICS)  # what the trained policy is tested against, each across shot counts
Grouped = dict[tuple[str, int], list[EvalRecord]]


def _paired(ctx: StageContext, family: dict[str, tuple[dict[int, float], dict[int, float]]]) -> dict[str, Any]:
    s = ctx.settings.eval
    results = holm_paired(family, s.bootstrap_samples, s.seed)
    return {
        k: {
            "delta": round(100 * r.delta, 2),
            "ci": [round(100 * x, 2) for x in r.ci95],
            "level": round(r.level, 4),
            "p_value": round(r.p_value, 4),
            "p_holm": round(r.p_holm, 4),
            "significant": r.significant,
        }
        for k, r in results.items()
    }


def paired_families(ctx: StageContext, grouped: Grouped, shots: list[int]) -> dict[str, dict[str, Any]]:
    """Policy vs each of COMPARED on identical question ids, Holm-corrected across the shot counts."""
    out = {}
    for other in COMPARED:
        family = {
            str(k): (
                {r.question_id: r.accuracy for r in grouped["policy", k]},
                {r.question_id: r.accuracy for r in grouped[other, k]},
            )
            for k in shots
            if ("policy", k) in grouped and (other, k) in grouped
        }
        if family:
            out[f"policy_vs_{other}"] = _paired(ctx, family)
    return out


Expected = dict[str, dict[int, dict[int, float]]]  # system -> shots -> question_id -> noise-free expected accuracy


def expected_accuracies(ctx: StageContext, split_name: str, grouped: Grouped, shots: list[int]) -> Expected:
    """The simulator's expected accuracy of every system's actual prompts, per question (sim backend only; empty
    for other backends, which cannot know their own expected accuracy)."""
    if ctx.settings.lvlm.backend != "sim":
        return {}
    sim, train, split = ctx.lvlm, ctx.split(ctx.settings.data.train_split), ctx.split(split_name)
    out: Expected = defaultdict(lambda: defaultdict(dict))
    for (system, k), records in grouped.items():
        if k in shots and system not in ("random", "zero-shot"):
            for r in records:
                out[system][k][r.question_id] = sim.expected_accuracy(
                    split[r.question_id], [train[i] for i in r.icd_ids]
                )
    return out


def noise_free_paired(ctx: StageContext, expected: Expected, shots: list[int]) -> dict[str, dict[str, Any]]:
    """Policy vs each heuristic on the same questions, paired on the simulator's expected accuracy (no answer
    sampling noise; the questions' sampling remains), Holm-corrected across shot counts: what the measured test
    cannot resolve when the differences are a point or less."""
    return {
        f"policy_vs_{other}": _paired(ctx, {str(k): (expected["policy"][k], expected[other][k]) for k in shots})
        for other in HEURISTICS
        if "policy" in expected and other in expected
    }


def seed_spread(eval_metrics: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """Per shot count: mean, sd, min and max of the policy's accuracy over its training seeds."""
    seeds = [name for name in eval_metrics if name == "policy" or name.startswith("policy-seed")]
    if len(seeds) < 2:
        return {}
    out = {}
    for k in sorted(eval_metrics["policy"], key=int):
        values = [eval_metrics[name][k]["accuracy"] for name in seeds if k in eval_metrics[name]]
        out[k] = {
            "seeds": len(values),
            "mean": round(statistics.fmean(values), 2),
            "sd": round(statistics.stdev(values), 2),
            "min": min(values),
            "max": max(values),
        }
    return out


def sim_ceilings(
    ctx: StageContext, split_name: str, questions: list[PlannedQuery], expected: Expected, shots: list[int]
) -> dict[str, dict[str, Any]]:
    """Noise-free expected accuracy (sim backend only) of every system's actual prompts (`expected`), beside the
    best sequence in each pool, random draws and the InfoScore teacher; and the share of the headroom between the
    best heuristic (similarity, MMR or global retrieval, whichever is best at that shot count) and the best
    sequence in the pool that each learned system captured. Empty for other backends."""
    from leverplus.lvlm.ceilings import best_in_pool, mean_random
    from leverplus.stages.sft_data import infoscore_beams

    if not expected:
        return {}
    sim, s = ctx.lvlm, ctx.settings
    train, split = ctx.split(s.data.train_split), ctx.split(split_name)
    refs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for q in questions:
        query, pool = split[q.question_id], [train[i] for i in q.pool]
        rng = np.random.default_rng([s.eval.seed, q.question_id])
        for k in shots:
            # The teacher at k shots: InfoScore's best beam of length k (what SFT imitates at sft.beam_length).
            beams = infoscore_beams(query, pool, sim, s.sft.beam_width, k, s.sft.candidates, rng)
            refs["InfoScore teacher"][k].append(sim.expected_accuracy(query, [train[i] for i in beams[0][0]]))
            refs["best in pool"][k].append(best_in_pool(sim, query, pool, k))
            refs["random (mean of 16 draws)"][k].append(mean_random(sim, query, pool, k, rng))
    systems = {name: {k: list(by_q.values()) for k, by_q in by_k.items()} for name, by_k in expected.items()}
    out: dict[str, dict[str, Any]] = {}
    for k in shots:
        row = {name: round(100 * float(np.mean(v[k])), 2) for name, v in {**refs, **systems}.items() if v.get(k)}
        out[str(k)] = {"expected_accuracy": row, **_headroom(row, list(systems))}
    return out


def _headroom(row: dict[str, float], systems: list[str]) -> dict[str, Any]:
    """The best heuristic at one shot count and the share of the headroom between it and the pool's best sequence
    that each learned system captured (none when the pool's best beats the heuristic by less than MIN_HEADROOM: the
    pool is the limit, and no selector within it can gain)."""
    heuristics = {name: row[name] for name in HEURISTICS if name in row}
    if not heuristics:
        return {"best_heuristic": None, "headroom_captured": {}}
    name = max(heuristics, key=lambda n: (heuristics[n], n))
    best, floor = row["best in pool"], heuristics[name]
    captured = {}
    if best - floor >= MIN_HEADROOM:
        captured = {x: round((row[x] - floor) / (best - floor), 3) for x in systems if x not in HEURISTICS}
    return {"best_heuristic": name, "headroom_captured": captured}


def _epoch_means(rows: list[dict[str, float]], prefix: str, names: tuple[str, ...]) -> dict[str, list[float]]:
    by_epoch: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        epoch = row.get(f"{prefix}/epoch")
        if epoch is None:
            continue
        for name in names:
            if f"{prefix}/{name}" in row:
                by_epoch[int(epoch)][name].append(row[f"{prefix}/{name}"])
    return {
        name: [round(statistics.fmean(by_epoch[e][name]), 5) for e in sorted(by_epoch) if by_epoch[e][name]]
        for name in names
    }


CURVES = {
    "sft": ("loss",),
    "rce": ("loss",),
    "grpo": ("reward_policy_weighted", "clip_frac", "kl_sampled", "frac_reward_zero_std", "ratio_min", "ratio_max"),
}


def training_curves(ctx: StageContext, checkpoints: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """Per-epoch means of each training stage's logged metrics (metrics.jsonl beside its checkpoint, which is a
    key in the store or a full URI)."""
    out = {}
    for stage, uri in checkpoints.items():
        store = ctx.checkpoint_store(uri)
        if stage not in CURVES or not store.exists("metrics.jsonl"):
            continue
        rows = [json.loads(line) for line in store.get_bytes("metrics.jsonl").decode().splitlines() if line]
        out[stage] = _epoch_means(rows, stage, CURVES[stage])
    return out


def checkpoint_configs(ctx: StageContext, run_id: str) -> dict[str, dict[str, Any]]:
    """The configs of the run's GRPO and RCE checkpoints and of the SFT policy RCE started from (keys: stage ->
    config, with "uri" added): what the report reads training settings, data version and init from."""
    out: dict[str, dict[str, Any]] = {}
    for stage in ("grpo", "rce"):
        key = f"{checkpoint_prefix(run_id, stage)}/config.json"
        if ctx.store.exists(key):
            out[stage] = {**json.loads(ctx.store.get_bytes(key)), "uri": checkpoint_prefix(run_id, stage)}
    init = out.get("rce", {}).get("init")
    if init and ctx.checkpoint_store(init).exists("config.json"):
        out["sft"] = {**json.loads(ctx.checkpoint_store(init).get_bytes("config.json")), "uri": init}
    return out
