"""What a better teacher would buy: RCE -> GRPO from a run's SFT policy on groups of good candidates whose rewards
come from K sampled answers per sequence (a format-aware teacher: it scores what the LVLM generates for the whole
sequence), K = 1 .. infinity, and on more training queries than one round balances.

    python benchmarks/teacher_study.py --store S [--run run-0001] [--queries 600] [--variants 1 8 inf inf:0.02:1e-4]
                                       [--oracle-queries 600 2000] [--heuristic 0.5] [--dev 300] [--write]

S is a store where `leverplus run balanced-v3` has run on the sim backend. Training queries are unplanned train
questions (disjoint from the dev queries), with pools from the run's sampler and `rl.candidates_per_query`
candidates from the round's own generator (policy samples, heuristic sequences and their neighbours, random draws).
A candidate's reward is the mean accuracy of K answers, each correct with the simulator's expected accuracy of the
prompt; K = inf is that expected accuracy itself, the limit of any sampling teacher. Nothing is balanced: with
K = inf no group is uninformative. Figures: noise-free expected accuracy on the dev queries (%), as signal_study.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import time

import numpy as np
from devsplit import dev_accuracy, dev_queries, run_settings
from figures import machine, publish, shots_table
from signal_study import baselines

from leverplus.policy import load_policy
from leverplus.policy.groups import GroupTable, GroupTableBuilder
from leverplus.policy.train import Group, SFTExample, train_grpo, train_rce, train_sft
from leverplus.records import PlannedQuery


def training_queries(ctx, run_id: str, n: int, dev: list[Group]) -> list[Group]:  # noqa: ANN001
    """n unplanned train questions that are not dev queries, with the run's pools."""
    taken = {g.question_id for g in dev}
    wider = dev_queries(ctx, run_id, n + 4 * len(dev))  # a superset of seeded fresh questions
    fresh = [g for g in wider if g.question_id not in taken]
    return sorted(random.Random(1).sample(fresh, min(n, len(fresh))), key=lambda g: g.question_id)


def candidate_groups(ctx, queries: list[Group], policy) -> list[tuple[Group, np.ndarray]]:  # noqa: ANN001
    """Each query's candidate sequences (as the round's score stage draws them) and their expected accuracies."""
    from leverplus.stages.score import candidate_sequences

    rl, train = ctx.settings.rl, ctx.split(ctx.settings.data.train_split)
    out = []
    for g in queries:
        query = PlannedQuery(question_id=g.question_id, pool=g.pool)
        seqs = [s for s, _ in candidate_sequences(query, rl.candidates_per_query, rl.train_shots, policy, ctx, 0)]
        p = [ctx.lvlm.expected_accuracy(train[g.question_id], [train[i] for i in s]) for s in seqs]
        out.append((Group(g.question_id, g.pool, seqs, []), np.array(p)))
    return out


def sampled_table(groups: list[tuple[Group, np.ndarray]], samples: float, seed: int) -> GroupTable:
    """Rewards from `samples` answers per candidate (each correct with probability p); inf: p itself."""
    rng, builder = np.random.default_rng(seed), GroupTableBuilder()
    for g, p in groups:
        rewards = p if math.isinf(samples) else rng.binomial(int(samples), p) / samples
        builder.add(g.question_id, g.pool, g.sequences, rewards.tolist())
    return builder.build()


def oracle_sft(ctx, sft, queries: list[Group], k: int, feats):  # noqa: ANN001, ANN201
    """SFT continued on the best k-shot sequence of each training pool: what the network learns from a teacher that
    names the best sequence outright (not deployable: it reads the simulator)."""
    from leverplus.lvlm.ceilings import best_sequence

    train, s = ctx.split(ctx.settings.data.train_split), ctx.settings.sft
    examples = []
    for g in queries:
        _, best = best_sequence(ctx.lvlm, train[g.question_id], [train[i] for i in g.pool], k)
        examples.append(SFTExample(g.question_id, g.pool, [g.pool[i] for i in best]))
    options = {"epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "grad_clip": ctx.settings.rl.grad_clip}
    return train_sft(copy.deepcopy(sft).train(), examples, feats, feats, **options, seed=0, sink=lambda *a: None)


def variant(text: str) -> tuple[float, float | None, float | None]:
    """K[:τ:lr] -> answers per candidate, RCE's final temperature and GRPO's lr (None: the run's)."""
    parts = [float(x) for x in text.split(":")] + [None, None]
    return parts[0], parts[1], parts[2]


def train_variant(ctx, sft, table: GroupTable, tau: float | None, lr: float | None, feats):  # noqa: ANN001, ANN201
    """RCE (its temperature schedule scaled to end at tau) then GRPO at lr, from the SFT policy."""
    from leverplus.stages.train import grpo_options, rce_options

    rl, quiet = ctx.settings.rl, lambda step, metrics: None
    tau = tau or rl.rce_tau_end
    options = {**rce_options(rl, 0), "tau_start": rl.rce_tau_start * tau / rl.rce_tau_end, "tau_end": tau}
    rce = train_rce(copy.deepcopy(sft).train(), table, feats, feats, **options, sink=quiet)
    return train_grpo(copy.deepcopy(rce).train(), table, feats, feats, **grpo_options(rl, 0, lr), sink=quiet)


def main() -> None:
    from leverplus.stages.context import StageContext

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", default="run-0001")
    parser.add_argument("--queries", type=int, default=600, help="training queries of the RL variants")
    parser.add_argument(
        "--variants", nargs="*", default=["1", "8", "inf", "inf:0.02:1e-4"],
        help="K[:RCE final temperature:GRPO lr] per variant; K answers per candidate, inf = the expected accuracy",
    )  # fmt: skip
    parser.add_argument("--heuristic", type=float, default=0.5, help="rl.heuristic_fraction of the candidates")
    parser.add_argument("--oracle-queries", type=int, nargs="*", default=[600, 2000], help="oracle SFT sizes")
    parser.add_argument("--dev", type=int, default=300, help="dev queries")
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    overrides = {"rl.heuristic_fraction": args.heuristic, "rl.policy_fraction": min(0.25, 1 - args.heuristic)}
    ctx = StageContext(run_settings(args.store, args.run, overrides), "benchmark")
    feats = ctx.features(ctx.settings.data.train_split)
    dev = dev_queries(ctx, args.run, args.dev)
    rows = baselines(ctx, dev)
    sft = load_policy(ctx.checkpoint_store(f"runs/{args.run}/checkpoints/sft"))[0]
    rows["SFT start (InfoScore beams)"] = dev_accuracy(ctx, sft, dev)
    for n in args.oracle_queries:
        queries = training_queries(ctx, args.run, n, dev)
        net = oracle_sft(ctx, sft, queries, 2, feats)
        rows[f"oracle SFT: the best 2-shot sequence of each of {len(queries)} pools"] = dev_accuracy(ctx, net, dev)
    groups = candidate_groups(ctx, training_queries(ctx, args.run, args.queries, dev), sft)
    for text in args.variants:
        start, (k, tau, lr) = time.monotonic(), variant(text)
        net = train_variant(ctx, sft, sampled_table(groups, k, seed=0), tau, lr, feats)
        tuned = f", RCE τ → {tau:g}, GRPO lr {lr:g}" if tau else ""
        rows[f"RCE → GRPO, {len(groups)} queries, K = {k:g}{tuned}"] = dev_accuracy(ctx, net, dev)
        print(f"K = {text}: {time.monotonic() - start:.0f} s", flush=True)
    text = (
        f"{machine()}; store of `make run` (run {args.run}), {len(dev)} dev queries, candidates: heuristic "
        f"{args.heuristic}, policy {overrides['rl.policy_fraction']}, the rest random. Noise-free %:\n\n"
        + shots_table(rows, "mmr λ=0.5", "best in pool")
    )
    print(text)
    if args.write:
        publish("teacher-study", text)


if __name__ == "__main__":
    main()
