"""Pools and heuristics on a dev split of *train* questions, noise-free: what each pool design lets a selector reach,
and which MMR λ the report's `mmr` baseline uses. Never touches evaluation questions.

    python benchmarks/selector_study.py [--store leverplus-store] [--run run-0001] [--dev 300] [--write]

Needs a store where `make run` has run (the embedded default). The dev queries are devsplit.py's: a seeded
sample of train questions no round planned and no SFT anchor used. For each pool design (sampler, size, diversity
share) it prints, per shot count, the simulator's expected accuracy of: similarity top-k within the pool, MMR within
the pool at each λ, global retrieval (top-k of the whole train split, no pool), and the best sequence in the pool
(exhaustive, or the ceilings' beam search); then the λ with the best mean over shots 2-4 on retrieved pools.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from devsplit import dev_queries, run_settings
from figures import machine, publish, table

from leverplus.heuristics import mmr, retrieve
from leverplus.lvlm.base import Request
from leverplus.lvlm.ceilings import best_sequence
from leverplus.metrics import holm_paired, vqa_accuracy
from leverplus.policy.order import prompt_order
from leverplus.pools import build_pools

SHOTS = (1, 2, 3, 4)
LAMBDAS = (0.3, 0.5, 0.7, 0.9)
POOLS = (("stratified", 32, 0.0), ("retrieved", 32, 0.0), ("retrieved", 32, 0.25), ("retrieved", 64, 0.0))


def _expected(ctx, qid: int, ids: list[int]) -> float:  # noqa: ANN001
    train = ctx.split(ctx.settings.data.train_split)
    return ctx.lvlm.expected_accuracy(train[qid], [train[i] for i in ids])


def _measured(ctx, qid: int, ids: list[int]) -> float:  # noqa: ANN001
    """VQA accuracy of the simulator's sampled answer: what an evaluation measures."""
    train = ctx.split(ctx.settings.data.train_split)
    query = train[qid]
    answer = ctx.lvlm.answer([Request(query, tuple(train[i] for i in ids))])[0].prediction
    return vqa_accuracy(answer, query.answers)


Sequences = dict[str, dict[int, dict[int, list[int]]]]  # system -> shots -> question_id -> ICD ids, prompt order


def dev_pools(ctx, ids: list[int], sampler: str, size: int, diversity: float) -> dict[int, list[int]]:  # noqa: ANN001
    feats, s = ctx.features(ctx.settings.data.train_split), ctx.settings
    return build_pools(ids, feats, feats, sampler, size, s.pool.seed, image_of=ctx.image_of(), diversity=diversity)


def pool_sequences(ctx, pools: dict[int, list[int]], lambdas: tuple[float, ...] = LAMBDAS) -> Sequences:  # noqa: ANN001
    """Each system's prompts on each dev query's pool: similarity, MMR at each λ, and the best sequence."""
    feats, train = ctx.features(ctx.settings.data.train_split), ctx.split(ctx.settings.data.train_split)
    out: Sequences = {}
    for qid, pool in pools.items():
        query = feats.joint([qid])[0]
        for lam in (1.0, *lambdas):
            name = "similarity" if lam == 1.0 else f"mmr λ={lam}"
            picks = mmr(query, feats.joint(pool), max(SHOTS), lam)
            for k in SHOTS:
                out.setdefault(name, {}).setdefault(k, {})[qid] = prompt_order([pool[i] for i in picks[:k]])
        for k in SHOTS:
            seq = best_sequence(ctx.lvlm, train[qid], [train[i] for i in pool], k)[1]
            out.setdefault("best in pool", {}).setdefault(k, {})[qid] = [pool[i] for i in seq]
    return out


def retrieval_table(ctx, ids: list[int]) -> dict[int, float]:  # noqa: ANN001
    """Global retrieval's expected accuracy (%) per shot count: the top-k of the whole train split, no pool."""
    feats = ctx.features(ctx.settings.data.train_split)
    top = retrieve(ids, feats, feats, max(SHOTS), ctx.image_of())
    return {k: 100 * float(np.mean([_expected(ctx, q, prompt_order(top[q][:k])) for q in ids])) for k in SHOTS}


def expected_table(ctx, seqs: Sequences) -> dict[str, dict[int, float]]:  # noqa: ANN001
    return {
        name: {k: 100 * float(np.mean([_expected(ctx, q, ids) for q, ids in by_q.items()])) for k, by_q in rows.items()}
        for name, rows in seqs.items()
    }


def detectable(ctx, better: dict[int, dict[int, list[int]]], worse: dict[int, dict[int, list[int]]]) -> dict:  # noqa: ANN001
    """The report's test (paired bootstrap on measured accuracy, Holm across shots) of one system against another
    on these questions: can a difference of this size be called at all?"""
    family = {
        str(k): (
            {q: _measured(ctx, q, ids) for q, ids in better[k].items()},
            {q: _measured(ctx, q, ids) for q, ids in worse[k].items()},
        )
        for k in SHOTS
    }
    results = holm_paired(family, ctx.settings.eval.bootstrap_samples, ctx.settings.eval.seed)
    return {
        k: {"delta": round(100 * r.delta, 2), "ci": [round(100 * x, 2) for x in r.ci95], "significant": r.significant}
        for k, r in results.items()
    }


def main() -> None:
    from leverplus.stages.context import StageContext

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="leverplus-store")
    parser.add_argument("--run", default="run-0001")
    parser.add_argument("--dev", type=int, default=300, help="dev queries")
    parser.add_argument("--write", action="store_true", help="publish the figures into the docs")
    args = parser.parse_args()
    ctx = StageContext(run_settings(args.store, args.run, {}), "benchmark")
    ids = [g.question_id for g in dev_queries(ctx, args.run, args.dev)]
    retrieval = retrieval_table(ctx, ids)
    body, retrieved = [], {}
    for sampler, size, diversity in POOLS:
        start = time.monotonic()
        seqs = pool_sequences(ctx, dev_pools(ctx, ids, sampler, size, diversity))
        rows = expected_table(ctx, seqs)
        label = f"{sampler} {size}" + (f", diversity {diversity}" if diversity else "")
        retrieved = rows if (sampler, size, diversity) == ("retrieved", 32, 0.0) else retrieved
        oracle = detectable(ctx, seqs["best in pool"], seqs["mmr λ=0.5"])
        called = [k for k, v in oracle.items() if v["significant"]]
        systems = ("similarity", "mmr λ=0.5", "best in pool")
        cells = [" / ".join(f"{rows[name][k]:.2f}" for k in SHOTS) for name in systems]
        deltas = " / ".join(f"{v['delta']:+.1f}" for v in oracle.values())
        body.append([label, *cells, f"{deltas} ({'shots ' + ', '.join(called) if called else 'none'})"])
        print(f"{label}: {time.monotonic() - start:.0f} s", flush=True)
    means = {lam: np.mean([retrieved[f"mmr λ={lam}"][k] for k in (2, 3, 4)]) for lam in LAMBDAS}
    best = max(means, key=means.get)
    header = ["pool", "similarity", "MMR λ 0.5", "best in pool", "best vs MMR, measured (called?)"]
    text = (
        f"{machine()}; {len(ids)} dev queries of the store of `make run`. Noise-free %, shots "
        + " / ".join(str(k) for k in SHOTS)
        + "; global retrieval "
        + " / ".join(f"{retrieval[k]:.2f}" for k in SHOTS)
        + ":\n\n"
        + table(header, body)
        + "\n\nMMR λ "
        + " / ".join(f"{lam}" for lam in LAMBDAS)
        + " on retrieved pools of 32 (mean of shots 2–4): "
        + " / ".join(f"{m:.2f}" for m in means.values())
        + f"; the best, λ = {best}, is `eval.mmr_lambda`."
    )
    print(text)
    if args.write:
        publish("selector-study", text)


if __name__ == "__main__":
    main()
