"""Time `leverplus study scaling` from a fresh directory and publish its figures (issue 20).

    python benchmarks/scaling_study.py [--rounds 5] [--dir D] [--write]

Runs the study in D (default: a fresh temporary directory; give D to keep the store or to continue a killed run),
then prints its wall time and the table of its scaling.json: per run, balanced queries and the policy's noise-free
accuracy (mean over training seeds, with the largest seed sd), beside the references of the last run. With
--write the table goes into the docs (benchmarks/figures.py) and the plot to benchmarks/scaling_study.png.
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

REFERENCES = (("SFT start", "sft"), ("MMR", "mmr"), ("global retrieval", "retrieval"), ("best in pool", "best in pool"))


def markdown(rows: list[dict], seconds: float, rounds: int) -> str:
    shots = sorted(rows[0]["shots"], key=int)
    body = [[r["run_id"], r["queries"], *[f"{r['shots'][k]['policy']:.2f}" for k in shots]] for r in rows]
    last = rows[-1]["shots"]
    body += [[name, "", *[f"{last[k][key]:.2f}" for k in shots]] for name, key in REFERENCES]
    sd = max(r["shots"][k]["policy_sd"] for r in rows for k in shots)
    return (
        f"`--rounds {rounds}`: **{seconds / 60:.1f} min** end to end ({machine()}). Noise-free expected accuracy "
        f"on the 300 eval questions, %; the policy is the mean of {last[shots[0]]['seeds']} training seeds (largest "
        f"seed sd {sd:.2f}):\n\n" + table(["run", "balanced queries", *[f"shot {k}" for k in shots]], body)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where to run (default: a fresh temporary directory)")
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        cmd = [sys.executable, "-m", "leverplus", "study", "scaling", "--rounds", str(args.rounds)]
        subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        study = workdir / "leverplus-study" / "studies" / "scaling"
        rows = json.loads((study / "scaling.json").read_text())
        text = markdown(rows, seconds, args.rounds)
        print(text)
        if args.write:
            publish("scaling-study", text)
            shutil.copyfile(study / "scaling.png", ROOT / "benchmarks" / "scaling_study.png")


if __name__ == "__main__":
    main()
