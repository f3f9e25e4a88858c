"""Time the embedded default (`leverplus run balanced-v3` with nothing configured) end to end and per stage.

    python benchmarks/embedded_default.py [--workers N] [--write]

Runs in a fresh temporary directory, so the world is synthesised and the SFT policy trained as on a first run.
Prints the wall time of every step and the share of the total. Each step is a process of its own, as a pod would
be, forked from a server that imported torch once (leverplus/steps.py); the same run with every step a new
interpreter (LEVERPLUS_STEP_PROCESS=fresh) is timed too, and their artifacts compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import ROOT, machine, publish, table

PLOT = Path(tempfile.gettempdir()) / "leverplus-embedded-noise_free.png"


def run_fresh(
    workers: int,
    sets: list[str] = (),
    steps: str = "forked",
    artifacts: dict | None = None,  # type: ignore[assignment]
) -> tuple[float, dict[str, float], dict]:
    """`leverplus run balanced-v3` (with `--set` overrides) in a fresh directory: its wall time, step timings and
    report metrics. steps: "forked" (the default runner) or "fresh" (a new interpreter per step). `artifacts`, when
    given, receives every tensor file and JSON-lines object of the store (those that name no path or wall time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")} | {"LEVERPLUS_STEP_PROCESS": steps}
    extra = [arg for item in sets for arg in ("--set", item)]
    cmd = [sys.executable, "-m", "leverplus", "run", "balanced-v3", "--workers", str(workers), *extra]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True)
        total = time.monotonic() - start
        # Logs are keyed by store and run: leverplus-logs/<store>-<hash>/run-0001/.
        (timings_file,) = Path(tmp).glob("leverplus-logs/*/run-0001/timings.json")
        timings = json.loads(timings_file.read_text())
        store = Path(tmp) / "leverplus-store"
        report = store / "runs/run-0001/report"
        metrics = json.loads((report / "metrics.json").read_text())
        shutil.copyfile(report / "noise_free.png", PLOT)  # the README's picture of the report; --write keeps it
        if artifacts is not None:
            artifacts |= {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*"))
                          if p.suffix in (".safetensors", ".jsonl")}  # fmt: skip
    return total, timings, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    forked, fresh = {}, {}
    total, timings, metrics = run_fresh(args.workers, artifacts=forked)
    fresh_total, _, _ = run_fresh(args.workers, steps="fresh", artifacts=fresh)
    same = forked.keys() == fresh.keys() and all(forked[k] == fresh[k] for k in forked)
    startup = _startup_seconds()
    timing = timing_markdown(timings, total, startup, args.workers, (fresh_total, len(forked), same))
    result = result_markdown(metrics)
    print(timing + "\n\n" + result)
    if args.write:
        shutil.copyfile(PLOT, ROOT / "docs" / "noise_free.png")
        publish("embedded-default-timing", timing)
        publish("embedded-default-result", result)


SYSTEMS = (  # (name in the report's ceilings, label), best first
    ("best in pool", "best sequence in the pool"),
    ("InfoScore teacher", "InfoScore teacher (best beam of length k)"),
    ("mmr", "MMR (λ 0.5, within the pool)"),
    ("retrieval", "global retrieval"),
    ("similarity", "similarity within the pool"),
    ("sft", "SFT (MMR prior)"),
    ("rce", "RCE"),
    ("policy", "RCE → GRPO, the policy"),
    ("random (mean of 16 draws)", "random (mean of 16 draws)"),
)


def timing_markdown(
    timings: dict[str, float], total: float, startup: float, workers: int, fresh: tuple[float, int, bool]
) -> str:
    rows = [[step, f"{seconds:.1f}", f"{seconds / total:.0%}"] for step, seconds in timings.items()]
    rows.append(["**end to end** (incl. synthesising the world)", f"**{total:.1f}**", ""])
    fresh_total, compared, same = fresh
    return (
        f"{machine()}, `--workers {workers}`:\n\n"
        + table(["step", "seconds", "share"], rows)
        + f"\n\nEach step is a process of its own, as a pod would be, forked from a server that imported torch once. "
        f"With every step a new interpreter (`LEVERPLUS_STEP_PROCESS=fresh`; one that imports torch costs "
        f"{startup:.1f} s to start) the same run takes {fresh_total:.1f} s: the fork server saves "
        f"{fresh_total - total:.1f} s ({fresh_total / total:.2f}x). The {compared} tensor files and JSON-lines "
        f"objects of the two stores are {'identical byte for byte' if same else 'NOT identical'}."
    )


def result_markdown(metrics: dict) -> str:
    """The run's noise-free table and the policy's paired tests on expected accuracy (Holm-corrected)."""
    ceilings, shots = metrics["ceilings"], sorted(metrics["ceilings"], key=int)
    rows = [[label, *[f"{ceilings[k]['expected_accuracy'][name]:.2f}" for k in shots]] for name, label in SYSTEMS]
    data = metrics["data"]
    tests = []
    for other in ("retrieval", "mmr"):
        found = metrics["paired_noise_free"][f"policy_vs_{other}"]
        cells = [f"{found[k]['delta']:+.2f}{'' if found[k]['significant'] else ' (n.s.)'}" for k in shots]
        tests.append(f"vs {other} " + " / ".join(cells))
    return (
        f"Balanced set {data['queries']} queries, {data['candidates']:,} candidates, {data['positive_ratio']:.1f} % "
        f"positive. Noise-free expected accuracy on the {metrics['eval_plan']['questions']} eval questions (the "
        "simulator's own value of each system's actual prompts), %:\n\n"
        + table(["system", *[f"shot {k}" for k in shots]], rows)
        + "\n\nThe policy, paired on expected accuracy (Holm-corrected; n.s. = not significant): "
        + "; ".join(tests)
        + "."
    )


def _startup_seconds(repeats: int = 3) -> float:
    """A fresh process importing what a training/eval step imports (torch included), doing nothing else."""
    code = "import leverplus.cli, leverplus.stages.train, leverplus.stages.evaluate, leverplus.stages.report"
    start = time.monotonic()
    for _ in range(repeats):
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return (time.monotonic() - start) / repeats


if __name__ == "__main__":
    main()
