"""Time, peak memory and bytes written of `leverplus filter` at VQAv2 scale, on groups of `score`'s exact shape
(20 candidates of 2 ICDs, a 64-item pool; benchmarks/scored_rounds.py), local store, `filter` in a fresh
process as a pod would run it.

    python benchmarks/filter_scale.py [--queries 20000]     one round into an empty set
    python benchmarks/filter_scale.py --curve                10k, 50k, 100k, 443,757 queries -> filter_scale.png
    python benchmarks/filter_scale.py --nightly [--set 400000] [--queries 10000]
                                                             a nightly round merged into a set of --set queries
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import recorded
from scored_rounds import write_scored_round

from leverplus.config import load_settings
from leverplus.stages.context import StageContext

SETTINGS = {"lvlm.backend": "sim", "features.encoder": "simple", "data.name": "synthetic"}
VQAV2_TRAIN = 443_757
SHARD = 2_000  # queries per shard: ~6 MiB, what a 20-minute scoring pod writes at a few queries per second


def context(store: Path) -> StageContext:
    return StageContext(load_settings(overrides={**SETTINGS, "store.uri": str(store)}), "bench")


def run_filter(store: Path, round_id: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `leverplus filter` in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    env |= {f"LEVERPLUS_{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": v for k, v in SETTINGS.items()}
    env |= {"LEVERPLUS_STORE__URI": str(store), "LEVERPLUS_LOG_LEVEL": "warning"}
    script = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'leverplus', 'filter', '--round', sys.argv[1]])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(p.returncode)\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, round_id], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return seconds, int(proc.stdout.strip().splitlines()[-1]) / 1024


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def one_round(queries: int) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, MiB of shards) of filtering one round of `queries` into an empty set."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        write_scored_round(context(store), "round-0001", range(1, queries + 1), SHARD)
        shards = _bytes(store / "rounds")
        seconds, rss = run_filter(store, "round-0001")
    return seconds, rss, shards / 2**20


def nightly(set_size: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        write_scored_round(context(store), "round-0001", range(1, set_size + 1), SHARD, balanced=True)
        seconds, rss = run_filter(store, "round-0001")
        print(f"set of {set_size} balanced queries published in {seconds:.1f} s, peak RSS {rss:.0f} MiB")
        first = set_size + 1
        write_scored_round(context(store), "round-0002", range(first, first + queries), SHARD)
        before = _bytes(store / "rl-data")
        seconds, rss = run_filter(store, "round-0002")
        written = _bytes(store / "rl-data") - before + (store / "rounds/round-0002/manifest.json").stat().st_size
        added = (store / "rl-data/balanced/segments/round-0002.jsonl").stat().st_size
    print(f"nightly round of {queries} queries into the set: {seconds:.1f} s, peak RSS {rss:.0f} MiB, "
          f"{written / 2**20:.1f} MiB written for {added / 2**20:.1f} MiB of new groups "
          f"({written / added:.2f}x)")  # fmt: skip


def curve(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes, rows = [10_000, 50_000, 100_000, VQAV2_TRAIN], []
    for queries in sizes:
        seconds, rss, shards = one_round(queries)
        rows.append((seconds, rss))
        line = f"{queries:>7} queries ({shards:,.0f} MiB of plan and shards): {seconds:6.1f} s, peak RSS {rss:5.0f} MiB"
        print(line, flush=True)
    fig, time_ax = plt.subplots(figsize=(6.4, 4))
    time_ax.plot(sizes, [r[0] for r in rows], "o-", color="tab:blue", label="time (s)")
    time_ax.axhline(60, color="tab:blue", ls=":", lw=1)
    time_ax.set(xlabel="queries in the round (20 candidates each)", ylabel="seconds", xscale="log")
    rss_ax = time_ax.twinx()
    rss_ax.plot(sizes, [r[1] for r in rows], "s-", color="tab:red", label="peak RSS (MiB)")
    rss_ax.axhline(1024, color="tab:red", ls=":", lw=1)
    rss_ax.set(ylabel="peak RSS (MiB)", ylim=(0, 1100))
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    time_ax.set_title("leverplus filter, one round (dotted: the targets), 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    from leverplus.log import configure_logging

    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=None, help="queries in the (nightly) round")
    parser.add_argument("--curve", action="store_true", help="10k, 50k, 100k and 443,757 queries, and a PNG")
    parser.add_argument("--nightly", action="store_true", help="a nightly round merged into a large set")
    parser.add_argument("--set", type=int, default=400_000, help="queries in the set (--nightly)")
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded(
        "filter-scale-nightly" if args.nightly else "filter-scale-curve" if args.curve else "filter-scale", args.write
    ):
        if args.curve:
            curve(Path(__file__).with_name("filter_scale.png"))
        elif args.nightly:
            nightly(args.set, args.queries or 10_000)
        else:
            queries = args.queries or 20_000
            seconds, rss, shards = one_round(queries)
            print(f"filter of {queries} queries x 20 candidates ({shards:.0f} MiB of plan and shards): "
                  f"{seconds:.1f} s, peak RSS {rss:.0f} MiB")  # fmt: skip
        print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
