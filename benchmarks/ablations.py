"""What each design choice of issue 20 buys: the embedded default against itself without the MMR prior in the
selector, and without both the prior and retrieved pools (the lab's design: stratified pools).

    python benchmarks/ablations.py [--workers 2] [--write]

Each row is a fresh `leverplus run balanced-v3` (the embedded default, with the `--set`s named) and its report's
noise-free expected accuracy on the eval questions (%), for the trained systems and the heuristics on the same pools.
"""

from __future__ import annotations

import argparse

from embedded_default import run_fresh
from figures import machine, publish, table

ABLATIONS = (
    ("the embedded default", []),
    ("without the MMR prior", ["policy.prior=false"]),
    ("stratified pools, no prior (the lab's design)", ["policy.prior=false", "pool.sampler=stratified"]),
)
SYSTEMS = (
    ("sft", "SFT"),
    ("policy", "RCE → GRPO"),
    ("mmr", "MMR"),
    ("retrieval", "retrieval"),
    ("best in pool", "best in pool"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    rows = []
    for label, sets in ABLATIONS:
        _, _, metrics = run_fresh(args.workers, sets)
        ceilings = metrics["ceilings"]
        shots = sorted(ceilings, key=int)
        for name, system in SYSTEMS:
            cells = [f"{ceilings[k]['expected_accuracy'][name]:.2f}" for k in shots]
            rows.append([label if name == "sft" else "", system, " / ".join(cells)])
        print(f"{label}: done", flush=True)
    text = f"{machine()}; noise-free expected accuracy on the 300 eval questions, shots 1 / 2 / 3 / 4, %:\n\n" + table(
        ["run", "system", "shots 1 / 2 / 3 / 4"], rows, right=2
    )
    print(text)
    if args.write:
        publish("ablations", text)


if __name__ == "__main__":
    main()
