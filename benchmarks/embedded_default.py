"""Time the embedded default (`leverplus run balanced-v3` with nothing configured) end to end and per stage.

    python benchmarks/embedded_default.py [--workers N]

Runs in a fresh temporary directory, so the world is synthesised and the SFT policy trained as on a first run.
Prints the wall time of every step, the share of the total, and how much of it is process start-up (each step
is a fresh `leverplus` process, as a pod would be).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "leverplus",
                "run",
                "balanced-v3",
                "--workers",
                str(args.workers),
                "--summary-json",
                "summary.json",
            ],
            cwd=tmp,
            env=env,
            check=True,
            capture_output=True,
        )
        total = time.monotonic() - start
        # Logs are keyed by store and run: leverplus-logs/<store>-<hash>/run-0001/.
        (timings_file,) = Path(tmp).glob("leverplus-logs/*/run-0001/timings.json")
        timings = json.loads(timings_file.read_text())
        metrics = json.loads((Path(tmp) / "leverplus-store/runs/run-0001/report/metrics.json").read_text())
    startup = _startup_seconds()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, workers {args.workers}"
    )
    print(f"end to end: {total:.1f} s (includes synthesising the world and SFT)")
    print(f"{'step':<28}{'seconds':>9}{'share':>8}")
    for step, seconds in timings.items():
        print(f"{step:<28}{seconds:>9.1f}{seconds / total:>8.1%}")
    steps = len(timings)
    print(
        f"process start-up with stage imports: {startup:.2f} s per process; >= {steps} processes "
        f"-> >= {steps * startup:.0f} s ({steps * startup / total:.0%} of the run)"
    )
    policy, sft, rnd = (metrics["eval"][s]["1"]["accuracy"] for s in ("policy", "sft", "random"))
    print(
        f"result: shot-1 accuracy policy {policy:.2f} %, sft {sft:.2f} %, random {rnd:.2f} %; "
        f"balanced queries {metrics['data']['queries']}"
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
