"""Which learning signal teaches the selector what the heuristics cannot: RCE -> GRPO on a store's balanced set under
each reward mode, scored on a dev split of *train* questions beside the non-learned systems on the same pools.

    python benchmarks/signal_study.py --store S [--run run-0001] [--rewards hard_plus_soft hard_plus_prob]
                                      [--dev 300] [--seeds 1] [--write]

S is a store where `leverplus run balanced-v3` has run; the study takes that run's recorded settings (pools, sizes,
training settings), so it trains exactly what the run trained, except for the reward mode (rewards are computed
from stored candidate fields, so a mode needs no rescoring). The dev queries are unscored train questions with pools
from the run's sampler (benchmarks/devsplit.py). Figures: the simulator's noise-free expected accuracy of
the greedy k-shot prompts, k = 1..4.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
from devsplit import dev_accuracy, dev_queries, run_settings
from figures import machine, publish, shots_table
from selector_study import expected_table, pool_sequences, retrieval_table

from leverplus.policy import load_policy
from leverplus.policy.train import Group, train_grpo, train_rce


def baselines(ctx, dev: list[Group]) -> dict[str, dict[int, float]]:  # noqa: ANN001
    """Similarity, MMR (eval.mmr_lambda) and the best sequence within each dev pool; global retrieval."""
    seqs = pool_sequences(ctx, {g.question_id: g.pool for g in dev}, (ctx.settings.eval.mmr_lambda,))
    return {**expected_table(ctx, seqs), "retrieval": retrieval_table(ctx, [g.question_id for g in dev])}


def group_noise(ctx) -> dict[str, float]:  # noqa: ANN001
    """What one sampled answer per candidate can teach: within each balanced group, the spread of the candidates'
    noise-free expected accuracy (all 20, and the 10 best: what separates the best sequence from MMR) against the
    sampled rewards' own noise, and how well the sampled accuracy tracks the expected one."""
    from leverplus.stages.balanced import stream_balanced

    train = ctx.split(ctx.settings.data.train_split)
    spread, best_spread, corr = [], [], []
    for g in stream_balanced(ctx.store, None)[1]:
        query = train[g.question_id]
        expected = np.array([ctx.lvlm.expected_accuracy(query, [train[i] for i in c.icd_ids]) for c in g.candidates])
        sampled = np.array([c.accuracy for c in g.candidates])
        spread.append(expected.std())
        best_spread.append(np.sort(expected)[-10:].std())
        if sampled.std() > 0 and expected.std() > 0:
            corr.append(float(np.corrcoef(expected, sampled)[0, 1]))
    return {
        "groups": len(spread),
        "expected_sd_all": float(np.mean(spread)),
        "expected_sd_best10": float(np.mean(best_spread)),
        "corr_sampled_expected": float(np.mean(corr)),
    }


def main() -> None:
    from leverplus.stages.context import StageContext
    from leverplus.stages.train import _groups, grpo_options, rce_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", default="run-0001")
    parser.add_argument("--rewards", nargs="+", default=["hard_plus_soft", "hard_plus_prob"])
    parser.add_argument("--dev", type=int, default=300, help="dev queries")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per reward mode")
    parser.add_argument("--grpo-lrs", type=float, nargs="+", help="GRPO learning rates (default: the run's)")
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    base = StageContext(run_settings(args.store, args.run, {}), "benchmark")
    dev = dev_queries(base, args.run, args.dev)
    noise = group_noise(base)
    print(
        f"balanced groups: {noise['groups']}; within a group the candidates' expected accuracy has sd "
        f"{noise['expected_sd_all']:.4f} (the 10 best: {noise['expected_sd_best10']:.4f}); a sampled answer's "
        f"accuracy has sd ~0.5 at p ~0.5 and correlates {noise['corr_sampled_expected']:.3f} with the expected one"
    )
    rows = baselines(base, dev)
    sft = load_policy(base.checkpoint_store(f"runs/{args.run}/checkpoints/sft"))[0]
    rows["SFT"] = dev_accuracy(base, sft, dev)
    quiet = lambda step, metrics: None  # noqa: E731
    for mode in args.rewards:
        ctx = StageContext(run_settings(args.store, args.run, {"rl.reward_mode": mode}), "benchmark")
        ctx._features, ctx._splits = base._features, base._splits  # the same tables: load them once
        feats, rl = ctx.features(ctx.settings.data.train_split), ctx.settings.rl
        groups, version = _groups(ctx, None)
        for seed in range(args.seeds):
            start = time.monotonic()
            rce = train_rce(copy.deepcopy(sft).train(), groups, feats, feats, **rce_options(rl, seed), sink=quiet)
            rows[f"RCE {mode} seed {seed}"] = dev_accuracy(ctx, rce, dev)
            for lr in args.grpo_lrs or [rl.grpo_lr]:
                options = grpo_options(rl, seed, lr)
                grpo = train_grpo(copy.deepcopy(rce).train(), groups, feats, feats, **options, sink=quiet)
                rows[f"RCE -> GRPO lr {lr:g} {mode} seed {seed}"] = dev_accuracy(ctx, grpo, dev)
            print(f"{mode} seed {seed}: {len(groups)} groups of {version}, {time.monotonic() - start:.0f} s")
    text = (
        f"{machine()}; store of `make run` (run {args.run}: pools `{base.settings.pool.sampler}` of "
        f"{base.settings.pool.size}, {noise['groups']} balanced queries), seed 0, {len(dev)} dev queries. Noise-free "
        "%:\n\n" + shots_table(rows, "mmr λ=0.5", "best in pool") + "\n\nWithin a balanced group the candidates' "
        f"expected accuracy has sd {noise['expected_sd_all']:.3f}, and {noise['expected_sd_best10']:.3f} among the "
        "10 best (what separates the best sequence from MMR); a candidate's reward comes from one sampled answer "
        f"(sd ≈ 0.5 at p ≈ 0.5) that correlates {noise['corr_sampled_expected']:.2f} with its expected accuracy."
    )
    print(text)
    if args.write:
        publish("signal-study", text)


if __name__ == "__main__":
    main()
