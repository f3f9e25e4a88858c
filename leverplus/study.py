"""`leverplus study scaling`: the lab's claim — more balanced data, a better selector — measured.

One balanced-v3 run (SFT, the first round, RCE -> GRPO, eval) and then `rounds - 1` nightly data-growth rounds that
each retrain (rl.retrain_growth 0) on the cumulative balanced set, all on one store and one world. The world is
synthesised once, large enough for every round, because growing it mid-study would change the retrieved pools and
global retrieval under the evaluation and confound data with pools. Each run's report is the measurement; the study
reads their metrics.json and writes studies/scaling/{report.md, report.html, scaling.png, scaling.json}: the
simulator's noise-free expected accuracy at each shot count against balanced queries, with the seed spread, beside
the SFT start, the heuristics and the best sequence in the pools.

Typed again after a kill, it continues: finished runs are counted, an unfinished one is resumed by `leverplus run`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from leverplus.errors import ConfigError
from leverplus.launch import RunRequest, launch, resolve_settings, staging_dir
from leverplus.log import get_logger
from leverplus.report.document import Document, Heading, Image, Paragraph, Table
from leverplus.report.plots import scaling_plot
from leverplus.run_record import records
from leverplus.store import Store, open_store

__all__ = ["STUDY_PREFIX", "run_scaling_study", "scaling_rows"]

STUDY_PREFIX = "studies/scaling"
REFERENCES = (
    "sft",
    "similarity",
    "mmr",
    "retrieval",
    "best in pool",
)  # the same in every run: what the policy is read against
QUESTIONS_PER_ROUND = 2500  # train questions a round may plan: target 150 at the ~8 % acceptance of retrieved pools


def _finished(store: Store) -> list[str]:
    """Run ids of the study's finished runs with a report, oldest first."""
    done = [r.run_id for r in records(store) if r.status == "finished"]
    return sorted(r for r in done if store.exists(f"runs/{r}/report/metrics.json"))


def scaling_rows(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    """Per run: balanced queries and, per shot count, each system's noise-free expected accuracy, the policy's mean
    and sd over its training seeds."""
    rows = []
    for run_id in run_ids:
        m = json.loads(store.get_bytes(f"runs/{run_id}/report/metrics.json"))
        shots = {}
        for k, c in m["ceilings"].items():
            ea = c["expected_accuracy"]
            seeds = [v for name, v in ea.items() if name == "policy" or name.startswith("policy-seed")]
            shots[k] = {
                **{name: ea[name] for name in REFERENCES if name in ea},
                "policy": round(statistics.fmean(seeds), 2),
                "policy_sd": round(statistics.stdev(seeds), 2) if len(seeds) > 1 else 0.0,
                "seeds": len(seeds),
            }
        rows.append(
            {"run_id": run_id, "version": m["data"]["version"], "queries": m["data"]["queries"], "shots": shots}
        )
    return rows


def _verdict(rows: list[dict[str, Any]]) -> str:
    """Say plainly whether accuracy grows with data: the policy's change from the first to the last run at each shot
    count, against its seed spread, and where it stands against MMR at the end."""
    first, last = rows[0], rows[-1]
    parts = []
    for k in sorted(last["shots"], key=int):
        a, b = first["shots"][k], last["shots"][k]
        change, noise = b["policy"] - a["policy"], max(a["policy_sd"], b["policy_sd"])
        word = "grew" if change > 2 * noise and change > 0 else "fell" if change < -2 * noise else "did not move"
        vs = f"; {b['policy'] - b['mmr']:+.2f} vs MMR" if "mmr" in b else ""
        parts.append(
            f"shot {k}: {word} {change:+.2f} ({a['policy']:.2f} → {b['policy']:.2f}, seed sd ≤ {noise:.2f}{vs})"
        )
    return (
        f"From {first['queries']} to {last['queries']} balanced queries the policy's noise-free accuracy "
        + "; ".join(parts)
        + ". 'grew' means a change larger than twice the seed sd."
    )


def write_study(store: Store, rows: list[dict[str, Any]]) -> str:
    doc = Document("Lever-Plus data-scaling study")
    shots = sorted(rows[0]["shots"], key=int)
    doc.add(
        Paragraph(
            f"{len(rows)} runs on one store and one world: a balanced-v3 run, then nightly data-growth rounds that "
            "each retrain RCE → GRPO from the same SFT policy on the cumulative balanced set. Each figure is the "
            "simulator's noise-free expected accuracy of the run's evaluation prompts (its report has the measured "
            "ones, with intervals and paired tests)."
        ),
        Heading("Does accuracy grow with balanced data?"),
        Paragraph(_verdict(rows)),
        Image("scaling.png", "noise-free accuracy against balanced queries"),
        Table(
            ["run", "version", "balanced queries", *[f"policy shot {k} (sd)" for k in shots]],
            [
                [
                    r["run_id"],
                    str(r["version"]),
                    str(r["queries"]),
                    *[f"{r['shots'][k]['policy']:.2f} ({r['shots'][k]['policy_sd']:.2f})" for k in shots],
                ]
                for r in rows
            ],
        ),
        Heading("References (the same pools in every run)"),
        Table(
            ["", *[f"shot {k}" for k in shots]],
            [[name, *[f"{rows[-1]['shots'][k].get(name, float('nan')):.2f}" for k in shots]] for name in REFERENCES],
        ),
    )
    files = {
        "scaling.png": scaling_plot(rows),
        "report.md": doc.markdown().encode(),
        "report.html": doc.html().encode(),
    }
    files["scaling.json"] = json.dumps(rows, indent=1, sort_keys=True).encode()
    for name, data in files.items():
        store.put_bytes(f"{STUDY_PREFIX}/{name}", data)
    return store.uri_for(f"{STUDY_PREFIX}/report.md")


def run_scaling_study(req: RunRequest, rounds: int) -> str:
    """Run (or continue) the study and write its report; returns the report's URI."""
    log = get_logger()
    overrides = {
        "rl.retrain_growth": 0.0,
        "data.synth_train": 3000 + QUESTIONS_PER_ROUND * (rounds - 1),
        **(req.overrides or {}),
    }
    staging = staging_dir(Path(req.log_dir or "leverplus-logs"))
    settings, _ = resolve_settings(RunRequest("balanced-v3", req.config_file, overrides, req.profile), staging)
    store = open_store(settings.store.uri, settings.store)
    sft = None
    while len(done := _finished(store)) < rounds:
        pipeline = "balanced-v3" if not done else "data-growth"
        sft = sft or (f"runs/{done[0]}/checkpoints/sft" if done else None)
        log.info("scaling study: next run", finished=len(done), rounds=rounds, pipeline=pipeline)
        summary = launch(
            RunRequest(
                pipeline,
                req.config_file,
                overrides,
                req.profile,
                sft_checkpoint=sft,
                workers=req.workers,
                log_dir=req.log_dir,
            )
        )
        if not summary["report_uri"]:  # with retrain_growth 0 every round retrains; a settings file may say otherwise
            raise ConfigError(f"scaling study: {summary['run_id']} did not retrain ({summary['outcome']})")
    return write_study(store, scaling_rows(store, _finished(store)[:rounds]))
