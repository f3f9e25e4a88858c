"""Choose GRPO's learning rate on a dev split of *train* queries, never on evaluation questions.

    python benchmarks/grpo_dev_sweep.py [--store leverplus-store] [--run run-0001] [--lrs 5e-6 2e-5 5e-5 2e-4]

Needs a store where `make run` has run (the embedded default: the synthetic world, the sim LVLM, a balanced set and
an SFT checkpoint). The dev queries are a seeded sample of train questions that no round planned and no SFT anchor
used, with pools built by the eval sampler (so they look like evaluation questions, but from the train split). RCE
trains on the whole balanced set from the run's SFT policy, then GRPO at each learning rate (the profile's epochs,
KL and clip). Each policy is scored on the dev queries by the simulator's noise-free expected accuracy of its greedy
1-4-shot prompts (the first pick next to the query). The learning rate with the best mean dev accuracy is what the
embedded profile uses; the figures are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import random
import time

import numpy as np

from leverplus.launch import _embedded_overlay
from leverplus.policy import PointerSelector, load_policy
from leverplus.policy.batch import make_batch
from leverplus.policy.order import prompt_order
from leverplus.policy.train import Group, train_grpo, train_rce

SHOTS = (1, 2, 3, 4)


def _settings(store: str):  # noqa: ANN202
    from leverplus.config import load_settings

    overlay = _embedded_overlay()
    flat = {f"{g}.{k}": v for g, fields in overlay.items() for k, v in fields.items()}
    return load_settings(overrides={**flat, "store.uri": store})


def dev_accuracy(ctx, net: PointerSelector, groups: list[Group]) -> dict[int, float]:  # noqa: ANN001
    """Noise-free expected accuracy (%) of the greedy k-shot prompts on the groups' queries, per k."""
    train, feats = ctx.split(ctx.settings.data.train_split), ctx.features(ctx.settings.data.train_split)
    batch = make_batch([g.question_id for g in groups], [g.pool for g in groups], feats, feats)
    picks = net.eval().select(batch.query, batch.pool, batch.mask, max(SHOTS)).tolist()
    out = {}
    for k in SHOTS:
        scores = [
            ctx.lvlm.expected_accuracy(train[g.question_id], [train[g.pool[i]] for i in prompt_order(row[:k])])
            for g, row in zip(groups, picks, strict=True)
        ]
        out[k] = 100 * float(np.mean(scores))
    return out


def _dev_queries(ctx, run_id: str, n: int) -> list[Group]:  # noqa: ANN001
    """Train questions no round planned and no SFT anchor used, with pools from the eval sampler."""
    from leverplus.pools import build_pools
    from leverplus.stages.plan import scored_round_stats, sft_plan_key

    s = ctx.settings
    used, _, _ = scored_round_stats(ctx)
    sft_plan = ctx.read_plan(sft_plan_key(run_id))
    used |= {q.question_id for shard in sft_plan.shards for q in shard}
    records = ctx.split(s.data.train_split)
    fresh = [r.question_id for r in records if r.question_id not in used]
    ids = sorted(random.Random(0).sample(fresh, min(n, len(fresh))))
    feats = ctx.features(s.data.train_split)
    image_of = {r.question_id: r.image_id for r in records}
    pools = build_pools(ids, feats, feats, s.pool.sampler, s.pool.size, s.pool.seed, image_of=image_of)
    return [Group(q, pools[q], [], []) for q in ids]


def main() -> None:
    from leverplus.stages.context import StageContext
    from leverplus.stages.train import _groups, grpo_options, rce_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="leverplus-store")
    parser.add_argument("--run", default="run-0001")
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-6, 2e-5, 5e-5, 2e-4])
    parser.add_argument("--dev", type=int, default=300, help="dev queries")
    args = parser.parse_args()
    ctx = StageContext(_settings(args.store), "benchmark")
    rl, feats = ctx.settings.rl, ctx.features(ctx.settings.data.train_split)
    fit, version = _groups(ctx, None)
    dev = _dev_queries(ctx, args.run, args.dev)
    sft = load_policy(ctx.checkpoint_store(f"runs/{args.run}/checkpoints/sft"))[0]
    quiet = lambda step, metrics: None  # noqa: E731
    rce = train_rce(copy.deepcopy(sft).train(), fit, feats, feats, **rce_options(rl, 0), sink=quiet)
    print(f"balanced set {version}: {len(fit)} queries to train on; {len(dev)} dev queries (unscored train questions)")
    print("| policy | " + " | ".join(f"dev shot {k}" for k in SHOTS) + " | mean | seconds |")
    print("|---|" + "---|" * (len(SHOTS) + 2))
    rows = {"SFT": dev_accuracy(ctx, sft, dev), "RCE": dev_accuracy(ctx, rce, dev)}
    seconds = {"SFT": 0.0, "RCE": 0.0}
    for lr in args.lrs:
        start = time.monotonic()
        grpo = train_grpo(copy.deepcopy(rce).train(), fit, feats, feats, **grpo_options(rl, 0, lr), sink=quiet)
        rows[f"RCE -> GRPO lr {lr:g}"] = dev_accuracy(ctx, grpo, dev)
        seconds[f"RCE -> GRPO lr {lr:g}"] = time.monotonic() - start
    for name, acc in rows.items():
        cells = " | ".join(f"{acc[k]:.2f}" for k in SHOTS)
        print(f"| {name} | {cells} | {np.mean(list(acc.values())):.2f} | {seconds[name]:.0f} |")
    best = max((n for n in rows if n.startswith("RCE ->")), key=lambda n: np.mean(list(rows[n].values())))
    print(f"best on dev: {best}")


if __name__ == "__main__":
    main()
