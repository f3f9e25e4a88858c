"""What a fan-out pod (score, sft-data, eval) pays to learn its queries: its part of the plan against the whole plan,
at VQAv2 scale.

    python benchmarks/plan_shard.py [--queries 443757] [--shard-size 1200]

Writes an RL plan of --queries queries with random 64-item pools in shards of --shard-size (20 GPU-minutes of
scoring at ~1 s per query) to a local store with `write_plan`, then, each in a fresh process as a pod would, reads
shard 0 with `StageContext.plan_shard`: through its part (the plan's index present), and through the whole plan
(the index removed, as for a plan written before parts existed). Prints seconds and peak RSS of each.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import recorded

from leverplus.config import load_settings
from leverplus.records import Plan, PlannedQuery
from leverplus.stages.context import StageContext
from leverplus.stages.layout import plan_index_key, plan_key
from leverplus.stages.plan import write_plan

# Peak RSS from /proc (VmHWM): getrusage's ru_maxrss survives exec, so a child forked from this process (which
# holds the whole plan) would report this process's peak.
READ = """
import json, sys, time
start = time.perf_counter()
from leverplus.config import load_settings
from leverplus.stages.context import StageContext
ctx = StageContext(load_settings(overrides={"store.uri": sys.argv[1]}), "score")
imported = time.perf_counter()
part = ctx.plan_shard(sys.argv[2], 0)
seconds = time.perf_counter() - imported
peak_kib = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
print(json.dumps({"seconds": seconds, "queries": len(part.queries), "rss_mib": peak_kib / 1024}))
"""


def read_in_fresh_process(store: Path, key: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", READ, str(store), key], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=443_757)
    parser.add_argument("--shard-size", type=int, default=1200)
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded("plan-shard", args.write):
        rng = random.Random(0)
        items = range(10_000_000, 10_500_000)
        planned = [PlannedQuery(question_id=q, pool=rng.sample(items, 64)) for q in range(args.queries)]
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "store"
            ctx = StageContext(load_settings(overrides={"store.uri": str(store)}), "plan")
            shards = [planned[i : i + args.shard_size] for i in range(0, len(planned), args.shard_size)]
            plan = Plan(kind="rl", split="train", sampler="stratified", pool_size=64, encoder="clip", shards=shards,
                        settings_hash=ctx.settings_hash, prompt_hash="p")  # fmt: skip
            start = time.perf_counter()
            write_plan(ctx, plan_key("r"), plan, "r")
            written = time.perf_counter() - start
            size = (store / plan_key("r")).stat().st_size
            part = read_in_fresh_process(store, plan_key("r"))
            ctx.store.delete(plan_index_key(plan_key("r")))
            whole = read_in_fresh_process(store, plan_key("r"))
        print(f"plan of {args.queries:,} queries with 64-item pools, {len(shards)} shards of {args.shard_size}: "
              f"{size / 2**20:.0f} MiB of plan.json, plan + parts written in {written:.1f} s")  # fmt: skip
        for name, r in (("its part", part), ("the whole plan", whole)):
            seconds, rss = r["seconds"], r["rss_mib"]
            print(f"shard 0 ({r['queries']} queries) through {name:15s} {seconds:7.2f} s  peak RSS {rss:6.0f} MiB")
        ratio_s, ratio_m = whole["seconds"] / part["seconds"], whole["rss_mib"] / part["rss_mib"]
        print(f"ratio: {ratio_s:.0f}x the time, {ratio_m:.1f}x the memory")


if __name__ == "__main__":
    main()
