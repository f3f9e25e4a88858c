"""`leverplus sft-data`: InfoScore beam search over one shard of anchors (DESIGN §3).

InfoScore(c | S, x) = P(y | c + S, x) - P(y | S, x), with P the LVLM's probability of the ground-truth answer.
Beam search: width `sft.beam_width`, length `sft.beam_length`, `sft.candidates` random pool items tried per beam
and step, each new ICD prepended (so the ICD chosen first sits next to the query: policy/order.py), keeping the
largest scores. All final beams become SFT sequences.
"""

from __future__ import annotations

import numpy as np

from leverplus.data.schemas import VQARecord
from leverplus.lvlm.base import LVLM, Request
from leverplus.progress import progress
from leverplus.stages.context import StageContext
from leverplus.stages.layout import sft_prefix, shard_key
from leverplus.stages.shards import shard_done, write_shard

__all__ = ["infoscore_beams", "run_sft_data"]


def infoscore_beams(
    query: VQARecord,
    pool: list[VQARecord],
    lvlm: LVLM,
    width: int,
    length: int,
    candidates: int,
    rng: np.random.Generator,
) -> list[tuple[list[int], float]]:
    """Final beams as (ICD question_ids in prompt order, InfoScore of the last step)."""
    base = lvlm.answer_prob([Request(query, ())])[0]
    beams: list[tuple[tuple[VQARecord, ...], float, float]] = [((), base, 0.0)]  # (sequence, P(y|S,x), score)
    for _ in range(length):
        expansions = []
        for seq, prob, _ in beams:
            used = {r.question_id for r in seq}
            free = [r for r in pool if r.question_id not in used]
            for i in rng.choice(len(free), size=min(candidates, len(free)), replace=False):
                expansions.append(((free[i], *seq), prob))
        probs = lvlm.answer_prob([Request(query, seq) for seq, _ in expansions])
        scored = {}
        for (seq, prev), p in zip(expansions, probs, strict=True):
            ids = tuple(r.question_id for r in seq)
            scored.setdefault(ids, (seq, p, p - prev))
        beams = sorted(scored.values(), key=lambda b: -b[2])[:width]
    return [([r.question_id for r in seq], round(score, 6)) for seq, _, score in beams]


def run_sft_data(ctx: StageContext, run_id: str, shard: int, force: bool = False) -> str:
    prefix = sft_prefix(run_id)
    key = shard_key(prefix, shard)
    if shard_done(ctx, key, force):
        return ctx.store.uri_for(key)
    anchors = ctx.plan_shard(f"{prefix}/plan.json", shard).queries
    s, train = ctx.settings.sft, ctx.split(ctx.settings.data.train_split)
    rows = []
    with progress(len(anchors), f"InfoScore beams shard {shard}") as update:
        for q in anchors:
            rng = np.random.default_rng([ctx.settings.run.seed, q.question_id])
            beams = infoscore_beams(
                train[q.question_id],
                [train[i] for i in q.pool],
                ctx.lvlm,
                s.beam_width,
                s.beam_length,
                s.candidates,
                rng,
            )
            rows.append(
                {
                    "question_id": q.question_id,
                    "pool": q.pool,
                    "sequences": [b[0] for b in beams],
                    "infoscores": [b[1] for b in beams],
                }
            )
            update(1)
    return write_shard(ctx, key, rows)
