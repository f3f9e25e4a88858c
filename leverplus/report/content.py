"""The report's sections, built from metrics.json's content alone (so the Markdown, the HTML and the JSON never
disagree): what was run, the data, the trained policy against each baseline with corrected paired tests, every
system with intervals and the seed spread, noise-free ceilings (sim), training curves, per-answer-type results,
the history of runs, and provenance read from the artifacts."""

from __future__ import annotations

from typing import Any

from leverplus.report.document import Document, Heading, Image, Paragraph, Table
from leverplus.report.science import HEURISTICS

__all__ = ["build_document"]

SIM_SHOTS_NOTE = (
    "On the simulated LVLM accuracy rises with shots by construction: more ICDs can show more of the query image's "
    "content and a closer question (its coverage and max terms never fall). This is a property of the simulator "
    "(`{lvlm}`), not a finding about real LVLMs; on a real model, read the shot trend from the systems' rows only."
)


def _fmt(m: dict[str, Any]) -> str:
    return f"{m['accuracy']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"


def _verdict(p: dict[str, Any]) -> str:
    if p["significant"]:
        word = "better" if p["delta"] > 0 else "worse"
        return f"**{word}** (Holm p = {p['p_holm']:.3f})"
    return f"within noise (Holm p = {p['p_holm']:.3f})"


def _overview(doc: Document, m: dict[str, Any]) -> None:
    plan, ev = m["eval_plan"], m["eval"]
    n = next(iter(next(iter(ev.values())).values()))["n"]
    train = m["training"]
    doc.add(
        Paragraph(
            f"{n} evaluation questions from the `{plan['split']}` split; accuracy is the **{m['metric_mode']}** VQA "
            f"metric in percent with 95 % bootstrap intervals. Pools (from the eval plan): sampler "
            f"`{plan['sampler']}`, size {plan['pool_size']}, features `{plan['encoder']}`, no ICD on the query's "
            f"image. LVLM: `{m['lvlm']}`. The policy is RCE → GRPO from the SFT policy `{train.get('sft', '?')}` on "
            f"balanced set **{m['data']['version']}**; training settings from its checkpoint: GRPO "
            f"{train.get('grpo_epochs')} epochs, lr {train.get('grpo_lr')}, KL β {train.get('kl_beta')}, clip ε "
            f"{train.get('clip_eps')}; RCE {train.get('rce_epochs')} epochs, lr {train.get('rce_lr')}; reward "
            f"`{train.get('reward_mode')}`; {train.get('seeds', 1)} training seed(s). {_encoder(train)}"
        )
    )


def _encoder(train: dict[str, Any]) -> str:
    enc = train.get("policy_encoder") or {}
    if enc.get("encoder") == "clip-lora":
        size = f"{enc['trainable_parameters']:,}"
        where = enc.get("trained_on")
        trained = f", trained on {where['device']} in {where['precision']}" if where else ""
        return (f"Policy encoder: `clip-lora` on `{enc['base_model']}`, LoRA rank {enc['lora_rank']} "
                f"(alpha {enc['lora_alpha']}), {size} trainable tower parameters{trained}.")  # fmt: skip
    return f"Policy encoder: `frozen` `{enc.get('features', '?')}` features."


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _ordered(results: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(results.items(), key=lambda kv: int(kv[0]))


def _paired_sentence(results: dict[str, Any], label: str) -> str:
    if not results:
        return ""
    deltas = ", ".join(f"{p['delta']:+.1f}" for _, p in _ordered(results))
    better = [k for k, p in _ordered(results) if p["significant"] and p["delta"] > 0]
    worse = [k for k, p in _ordered(results) if p["significant"] and p["delta"] < 0]
    verdict = (
        "; ".join(
            [f"significantly better at shots {', '.join(better)}"] * bool(better)
            + [f"significantly worse at shots {', '.join(worse)}"] * bool(worse)
        )
        or "within noise at every shot count"
    )
    shots = ", ".join(sorted(results, key=int))
    return f"Against {label} the policy differs by {deltas} points at shots {shots}: {verdict} after Holm correction."


def _best_heuristic(m: dict[str, Any]) -> str | None:
    """The non-learned system with the best mean measured accuracy over the shot counts: what RL must beat."""
    ev = m["eval"]
    present = [x for x in HEURISTICS if x in ev]
    if not present:
        return None
    return max(present, key=lambda x: sum(v["accuracy"] for v in ev[x].values()) / len(ev[x]))


def _summary(doc: Document, m: dict[str, Any]) -> None:
    """What RL bought, in one paragraph, from the numbers below it: against the SFT start and against the best
    non-learned system, measured and (sim) noise-free."""
    parts = [_paired_sentence(m["paired"].get("policy_vs_sft", {}), "its SFT start")]
    best = _best_heuristic(m)
    if best:
        label = f"the best non-learned system on these questions, `{best}`"
        parts.append(_paired_sentence(m["paired"].get(f"policy_vs_{best}", {}), label))
        noise_free = m.get("paired_noise_free", {}).get(f"policy_vs_{best}", {})
        parts.append(_paired_sentence(noise_free, f"`{best}` on the simulator's expected accuracy (no answer noise)"))
    if m["ceilings"]:
        shots = sorted(m["ceilings"], key=int)
        ea = {k: m["ceilings"][k]["expected_accuracy"] for k in shots}
        gain = ", ".join(f"{ea[k]['policy'] - ea[k]['sft']:+.1f}" for k in shots if "sft" in ea[k])
        versus = ", ".join(
            f"{ea[k]['policy'] - ea[k][h]:+.1f} vs `{h}`"
            for k in shots
            if (h := m["ceilings"][k].get("best_heuristic")) and h in ea[k]
        )
        captured = ", ".join(_share(m["ceilings"][k]["headroom_captured"].get("policy")) for k in shots)
        parts.append(
            f"Noise-free (the simulator's expected accuracy) at shots {', '.join(shots)}: RCE → GRPO moved the SFT "
            f"policy by {gain} points; the policy stands at {versus} (the best heuristic at each shot count) and "
            f"captured {captured} of the headroom between that heuristic and the best sequence in each pool "
            "(n/a: the pool's best beats the heuristic by less than half a point)."
        )
    if m["seeds"]:
        worst = max(v["sd"] for v in m["seeds"].values())
        parts.append(f"Across {next(iter(m['seeds'].values()))['seeds']} training seeds the sd is at most {worst:.2f}.")
    if any(parts):
        doc.add(Heading("What RL bought"), Paragraph(" ".join(p for p in parts if p)))


def _data(doc: Document, m: dict[str, Any], versions: list[dict], with_histogram: bool) -> None:
    data = m["data"]
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
        Paragraph(
            f"This run trained on **{data['version']}**: {data['queries']} queries, {data['candidates']} "
            f"candidates, {data['positive_ratio']:.1f} % positive."
        ),
    )
    if with_histogram:
        doc.add(Image("positive_ratio.png", "positive-ratio histogram"))


def _tests(doc: Document, m: dict[str, Any]) -> None:
    ev = m["eval"]
    doc.add(
        Heading("Results: the trained policy against each baseline (same questions)"),
        Paragraph(
            "Paired bootstrap of the per-question difference, Holm-corrected across the shot counts of each "
            "comparison: the interval shown is the corrected one (its level grows with the number of tests left), "
            "and a difference is called only when that interval excludes 0."
        ),
    )
    for family, results in m["paired"].items():
        other = family.removeprefix("policy_vs_")
        rows = [
            [
                k,
                _fmt(ev[other][k]),
                _fmt(ev["policy"][k]),
                f"{p['delta']:+.2f}",
                f"[{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}] ({100 * p['level']:.1f} %)",
                _verdict(p),
            ]
            for k, p in sorted(results.items(), key=lambda kv: int(kv[0]))
        ]
        doc.add(
            Heading(f"policy vs {other}", 3),
            Table(["shots", other, "policy", "Δ", "Δ corrected CI", "verdict"], rows),
        )


def _systems(doc: Document, m: dict[str, Any]) -> None:
    ev = m["eval"]
    systems = [x for x in ev if x != "zero-shot"]
    shots = sorted({k for x in systems for k in ev[x]}, key=int)
    rows = [[x, *[_fmt(ev[x][k]) if k in ev[x] else "" for k in shots]] for x in systems]
    if m["seeds"]:
        rows.append(
            [
                f"policy, {next(iter(m['seeds'].values()))['seeds']} seeds: mean ± sd [min, max]",
                *[
                    f"{v['mean']:.2f} ± {v['sd']:.2f} [{v['min']:.2f}, {v['max']:.2f}]"
                    for v in (m["seeds"].get(k, {}) for k in shots)
                    if v
                ],
            ]
        )
    doc.add(Heading("All systems"), Table(["system", *[f"shot {k}" for k in shots]], rows))
    if "zero-shot" in ev:
        doc.add(Paragraph(f"Zero-shot: {_fmt(ev['zero-shot']['0'])}."))
    doc.add(Image("accuracy_vs_shots.png", "accuracy vs shots"))


def _ceilings(doc: Document, m: dict[str, Any]) -> None:
    if not m["ceilings"]:
        return
    shots = sorted(m["ceilings"], key=int)
    names = list(next(iter(m["ceilings"].values()))["expected_accuracy"])
    doc.add(
        Heading("Ceilings (simulated LVLM, noise-free)"),
        Paragraph(
            "Expected accuracy of each system's actual prompts as the simulator computes it (no sampling noise), "
            "beside the best ordered sequence in each pool (exhaustive search, or a beam search at larger sizes), "
            "random draws, and the InfoScore teacher that SFT imitates. `similarity` and `mmr` choose within the pool; "
            "`retrieval` takes the top-k of the whole train split, so it can beat the best sequence in a pool. "
            "*Headroom captured* is (system − best heuristic) / (best in pool − best heuristic), the best heuristic "
            "being the best of similarity, MMR and retrieval at that shot count: 0 is that heuristic, 1 is the best "
            "the pools allow; none where the pool's best beats the heuristic by less than half a point."
        ),
        Table(
            ["", *[f"shot {k}" for k in shots]],
            [[n, *[f"{m['ceilings'][k]['expected_accuracy'].get(n, float('nan')):.2f}" for k in shots]] for n in names],
        ),
    )
    captured = sorted({n for k in shots for n in m["ceilings"][k]["headroom_captured"]})
    if captured:
        doc.add(
            Table(
                ["headroom captured", *[f"shot {k}" for k in shots]],
                [
                    ["(best heuristic)", *[str(m["ceilings"][k].get("best_heuristic")) for k in shots]],
                    *[[n, *[_share(m["ceilings"][k]["headroom_captured"].get(n)) for k in shots]] for n in captured],
                ],
            )
        )
    doc.add(Image("noise_free.png", "noise-free accuracy vs shots"))
    tests = m.get("paired_noise_free", {})
    if tests:
        doc.add(
            Paragraph(
                "The policy against each heuristic, paired on expected accuracy (the answer's sampling noise removed, "
                "the questions' sampling kept), Holm-corrected across shot counts:"
            ),
            Table(
                ["", *[f"shot {k}" for k in shots]],
                [
                    [family.replace("_", " "), *[_test_cell(results[k]) if k in results else "" for k in shots]]
                    for family, results in tests.items()
                ],
            ),
        )
    doc.add(Paragraph(SIM_SHOTS_NOTE.format(lvlm=m["lvlm"])))


def _test_cell(p: dict[str, Any]) -> str:
    return f"{p['delta']:+.2f} [{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}] {_verdict(p)}"


def _curves(doc: Document, m: dict[str, Any]) -> None:
    if not m["curves"]:
        return
    doc.add(Heading("Training"), Image("training.png", "training curves per epoch"))
    grpo = m["curves"].get("grpo", {})
    if grpo.get("reward_policy_weighted"):
        doc.add(
            Paragraph(
                f"GRPO, first → last epoch: reward of the stored candidates weighted by the policy's probabilities "
                f"{grpo['reward_policy_weighted'][0]:.3f} → {grpo['reward_policy_weighted'][-1]:.3f}; clip fraction "
                f"{grpo['clip_frac'][-1]:.3f}, ratio range [{min(grpo['ratio_min']):.3f}, "
                f"{max(grpo['ratio_max']):.3f}] over training, KL(policy ‖ reference) sampled from the policy "
                f"{grpo['kl_sampled'][-1]:.4f}, groups with zero reward variance "
                f"{grpo['frac_reward_zero_std'][-1]:.3f}."
            )
        )


def _answer_types(doc: Document, m: dict[str, Any]) -> None:
    ev = m["eval"]
    systems = [x for x in ev if x != "zero-shot"]
    shots = sorted({k for x in systems for k in ev[x]}, key=int)
    types = sorted({t for x in ev for k in ev[x] for t in ev[x][k]["per_answer_type"]})
    doc.add(Heading("Per answer type"))
    zero = ev.get("zero-shot", {}).get("0")
    rows = [["zero-shot", "0", *[f"{zero['per_answer_type'].get(t, 0):.2f}" for t in types]]] if zero else []
    for k in shots:
        rows += [
            [x, k, *[f"{ev[x][k]['per_answer_type'].get(t, 0):.2f}" for t in types]] for x in systems if k in ev[x]
        ]
    doc.add(Table(["system", "shots", *types], rows))


def _history(doc: Document, history: list[dict], skipped: list[str]) -> None:
    doc.add(Heading("History of runs in this store (this run included)"))
    shots = sorted({k for h in history for k in h["shots"]}, key=int)
    doc.add(
        Table(
            ["run", "SFT start", "data", "balanced queries", *[f"policy shot {k}" for k in shots]],
            [
                [
                    h["run_id"],
                    f"`{h.get('sft', '?')}`",
                    str(h.get("version", "?")),
                    str(h["queries"]),
                    *[_fmt(h["shots"][k]) if k in h["shots"] else "" for k in shots],
                ]
                for h in history
            ],
        )
    )
    if skipped:
        doc.add(Paragraph(f"Not compared: {', '.join(skipped)}."))
    doc.add(Image("history.png", "balanced-set size and accuracy across runs"))


def _provenance(doc: Document, m: dict[str, Any]) -> None:
    doc.add(
        Heading("Provenance"),
        Table(
            ["item", "value"],
            [
                ["settings of each stage", ", ".join(f"`{k}`" for k in m["settings_files"]) or "none recorded"],
                ["settings hash (report step)", f"`{m['settings_hash'][:16]}`"],
                ["prompt hash", f"`{m['prompt_hash']}`"],
                ["code version", m["code_version"]],
                ["metric mode", m["metric_mode"]],
                *[[f"{stage} checkpoint", f"`{uri}`"] for stage, uri in m["checkpoints"].items()],
            ],
        ),
    )


def build_document(
    m: dict[str, Any], versions: list[dict], history: list[dict], skipped: list[str], with_histogram: bool
) -> Document:
    doc = Document(f"Lever-Plus report — {m['run_id']}")
    _overview(doc, m)
    _summary(doc, m)
    _data(doc, m, versions, with_histogram)
    _tests(doc, m)
    _systems(doc, m)
    _ceilings(doc, m)
    _curves(doc, m)
    _answer_types(doc, m)
    _history(doc, history, skipped)
    _provenance(doc, m)
    return doc
