"""A dev split of *train* questions, for choosing settings without ever looking at evaluation questions.

The dev queries are a seeded sample of train questions that no round planned and no SFT anchor used, with pools
from the run's sampler (so they look like evaluation questions, but from the train split). A policy is scored on
them by the simulator's noise-free expected accuracy of its greedy 1-4-shot prompts (the first pick next to the
query). Used by selector_study, signal_study and teacher_study.
"""

from __future__ import annotations

import random

import numpy as np

from leverplus.config import load_recorded_settings
from leverplus.policy import PointerSelector
from leverplus.policy.batch import make_batch
from leverplus.policy.order import prompt_order
from leverplus.policy.train import Group
from leverplus.run_record import recorded_settings
from leverplus.store import open_store

SHOTS = (1, 2, 3, 4)


def run_settings(store: str, run_id: str, overrides: dict[str, object]):  # noqa: ANN201
    """The settings a run recorded, with overrides: a study trains and scores exactly what the run did."""
    found = recorded_settings(open_store(store), run_id, None)
    if found is None:
        raise SystemExit(f"{store}: run {run_id} has no recorded settings; run `leverplus run balanced-v3` there")
    return load_recorded_settings(found[1], {"store.uri": store, **overrides})


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


def dev_queries(ctx, run_id: str, n: int) -> list[Group]:  # noqa: ANN001
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
