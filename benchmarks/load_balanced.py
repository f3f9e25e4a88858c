"""Memory and time of loading a balanced version for RCE/GRPO (`stages/train._groups`): segments streamed and
verified line by line, each record checked and turned into rows of the training arrays (policy/groups.py).

    python benchmarks/load_balanced.py [--queries 400000] [--rounds 4]

Publishes a balanced set of N queries in --rounds segments (groups of `score`'s exact shape, all inside the
balance band; benchmarks/scored_rounds.py), then loads it in a fresh process and prints the time, the growth of
that process's peak RSS over its RSS before loading, the bytes of the arrays themselves, and the growth beyond them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from figures import recorded
from filter_scale import SETTINGS, SHARD, context, run_filter
from scored_rounds import write_scored_round

_MEASURE = """
import time
from leverplus.config import load_settings
from leverplus.log import configure_logging
from leverplus.stages.context import StageContext
from leverplus.stages.train import _groups
def kib(field):  # VmRSS: resident now; VmHWM: the peak so far (Linux)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
configure_logging("warning")
ctx = StageContext(load_settings(), "bench")
before = kib("VmRSS")
start = time.monotonic()
table = _groups(ctx, None)[0]
seconds = time.monotonic() - start
grown = (kib("VmHWM") - before) / 1024
print(f"{len(table)} {seconds:.2f} {grown:.0f} {table.nbytes / 2**20:.0f}")
"""


def measure(store: Path) -> tuple[int, float, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    env |= {f"LEVERPLUS_{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": v for k, v in SETTINGS.items()}
    env |= {"LEVERPLUS_STORE__URI": str(store)}
    out = subprocess.run([sys.executable, "-c", _MEASURE], env=env, capture_output=True, text=True, check=True)
    groups, seconds, grown, arrays = out.stdout.split()
    return int(groups), float(seconds), float(grown), float(arrays)


def main() -> None:
    from leverplus.log import configure_logging

    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=400_000, help="balanced queries in the version")
    parser.add_argument("--rounds", type=int, default=4, help="segments (nightly rounds) the version is made of")
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded("load-balanced", args.write):
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp)
            per_round = -(-args.queries // args.rounds)
            for r in range(args.rounds):
                ids = range(1 + r * per_round, 1 + min(args.queries, (r + 1) * per_round))
                write_scored_round(context(store), f"round-{r + 1:04d}", ids, SHARD, balanced=True)
                run_filter(store, f"round-{r + 1:04d}")
            groups, seconds, grown, arrays = measure(store)
        print(f"loaded {groups} groups from {args.rounds} segments: {seconds:.1f} s, peak RSS +{grown:.0f} MiB, "
              f"arrays {arrays:.0f} MiB, beyond the arrays +{grown - arrays:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
