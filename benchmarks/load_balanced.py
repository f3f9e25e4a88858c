"""Memory and time of loading a balanced version for RCE/GRPO: the parsed records (what training held before) vs
the compact training groups it holds now (question id, pool, candidate ids, rewards).

    python benchmarks/load_balanced.py [--queries 9500]

Publishes a balanced set of about N queries with benchmarks/filter_scale.py's groups (score's exact shape), then
loads it in a fresh process each way and prints the growth of that process's RSS and the seconds taken.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from filter_scale import SETTINGS, run_filter, write_round

_MEASURE = """
import resource, sys, time
from leverplus.config import load_settings
from leverplus.log import configure_logging
from leverplus.stages.context import StageContext
from leverplus.stages.filter import load_balanced
from leverplus.stages.train import _groups
configure_logging("warning")
ctx = StageContext(load_settings(), "bench")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.monotonic()
held = load_balanced(ctx)[1] if sys.argv[1] == "records" else _groups(ctx, None)[0]
seconds = time.monotonic() - start
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"{len(held)} {seconds:.2f} {grown:.0f}")
"""


def measure(store: Path, how: str) -> tuple[int, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    env |= {f"LEVERPLUS_{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": v for k, v in SETTINGS.items()}
    env |= {"LEVERPLUS_STORE__URI": str(store)}
    out = subprocess.run([sys.executable, "-c", _MEASURE, how], env=env, capture_output=True, text=True, check=True)
    groups, seconds, grown = out.stdout.split()
    return int(groups), float(seconds), float(grown)


def main() -> None:
    from leverplus.log import configure_logging

    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=9500, help="balanced queries (about)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        write_round(store, "round-0001", 1, 3 * args.queries, 500)  # about a third is balanced
        run_filter(store, "round-0001")
        for how, label in (("records", "parsed records (before)"), ("training", "training groups (now)")):
            groups, seconds, grown = measure(store, how)
            each = grown * 1024 / groups
            print(f"{label:<26} {groups} groups: {seconds:.1f} s, RSS +{grown:.0f} MiB ({each:.1f} kB each)")


if __name__ == "__main__":
    main()
