"""Time and peak memory of `leverplus filter` on a round of N queries, groups shaped exactly as `score` writes them
(20 candidates of 2 ICDs, a 64-item pool), on a local store.

    python benchmarks/filter_scale.py [--queries 20000] [--shard-size 500] [--existing 0]

`--existing M` first publishes a balanced set of about M queries, so the figure is a nightly round merged into a
grown set. The filter runs as `leverplus filter` in a fresh process (as a pod would); peak RSS is that process's.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from leverplus.config import load_settings
from leverplus.lvlm import lvlm_id
from leverplus.records import Candidate, CandidateGroup, Plan, PlannedQuery
from leverplus.stages.compat import group_facts
from leverplus.stages.context import StageContext
from leverplus.stages.layout import plan_key, round_prefix, shard_key
from leverplus.stages.shards import write_shard

SETTINGS = {"lvlm.backend": "sim", "features.encoder": "simple", "data.name": "synthetic"}


def _group(rng: random.Random, qid: int, round_id: str, settings: object) -> CandidateGroup:
    pool = rng.sample(range(10_000_000, 10_500_000), 64)
    positives = rng.randint(0, 20)
    candidates = [
        Candidate(
            icd_ids=rng.sample(pool, 2),
            prediction=rng.choice(["yes", "no", "2", "red"]),
            accuracy=1.0 if i < positives else 0.0,
            correct=i < positives,
            answer_prob=round(rng.random(), 6),
            source="policy" if i % 2 else "random",
        )
        for i in range(20)
    ]
    facts = {**group_facts(settings), "lvlm": lvlm_id(settings.lvlm)}  # type: ignore[attr-defined]
    return CandidateGroup(question_id=qid, pool=pool, candidates=candidates, round_id=round_id, **facts)


def write_round(store: Path, round_id: str, first_qid: int, queries: int, shard_size: int) -> None:
    """A planned and scored round in `store`, without an LVLM: the groups are random but of the real shape."""
    ctx = StageContext(load_settings(overrides={**SETTINGS, "store.uri": str(store)}), "bench")
    rng = random.Random(first_qid)
    qids = list(range(first_qid, first_qid + queries))
    planned = [PlannedQuery(question_id=q, pool=[-1]) for q in qids]
    shards = [planned[i : i + shard_size] for i in range(0, len(planned), shard_size)]
    plan = Plan(kind="rl", split="train", sampler="stratified", pool_size=64, encoder="simple", shards=shards,
                settings_hash=ctx.settings_hash, prompt_hash="x")  # fmt: skip
    ctx.put_json(plan_key(round_id), plan)
    for index, shard in enumerate(shards):
        groups = [_group(rng, q.question_id, round_id, ctx.settings) for q in shard]
        write_shard(ctx, shard_key(round_prefix(round_id), index), groups)


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


def main() -> None:
    from leverplus.log import configure_logging

    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--existing", type=int, default=0, help="queries already in the balanced set (about)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        if args.existing:
            # About a third of random groups is balanced (band 0.40-0.60 of 0..20 positives): score 3x as many.
            write_round(store, "round-0000", 1, 3 * args.existing, args.shard_size)
            run_filter(store, "round-0000")
        write_round(store, "round-0001", 50_000_000, args.queries, args.shard_size)
        before = sum(p.stat().st_size for p in (store / "rl-data").rglob("*") if p.is_file()) if args.existing else 0
        shards = sum(p.stat().st_size for p in (store / "rounds/round-0001/shards").glob("*.jsonl"))
        seconds, rss = run_filter(store, "round-0001")
        after = sum(p.stat().st_size for p in (store / "rl-data").rglob("*") if p.is_file())
    print(f"filter of {args.queries} queries x 20 candidates ({shards / 2**20:.0f} MiB of shards)"
          f"{f' into a set of ~{args.existing}' if args.existing else ''}: {seconds:.1f} s, peak RSS {rss:.0f} MiB, "
          f"{(after - before) / 2**20:.0f} MiB written under rl-data/")  # fmt: skip
    print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
