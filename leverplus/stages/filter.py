"""`leverplus filter`: join every shard of a round, keep balanced queries, and publish the next version of the
cumulative balanced set.

Balanced: at least one positive and one negative, and min_pos_ratio <= positives / candidates <= max_pos_ratio.
The set is keyed by question_id: a round adds only queries not already present. Versions are immutable
(v1, v2, ...); `latest` moves only after the version is written. The round's shards stay in the store, so rejected
queries' groups are never lost.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator

import numpy as np

from leverplus.catalog import Catalog
from leverplus.errors import DataError, IntegrityError
from leverplus.records import CandidateGroup
from leverplus.stages.compat import check_groups
from leverplus.stages.context import StageContext
from leverplus.stages.layout import BALANCED, LEASE, MERGED_EXPORT, plan_key, round_prefix, shard_key
from leverplus.stages.shards import read_shard
from leverplus.store.lease import lease

__all__ = [
    "RATIO_BINS",
    "is_balanced",
    "iter_groups",
    "latest_version",
    "load_balanced",
    "parse_groups",
    "run_filter",
    "stream_balanced",
]


RATIO_BINS = 21  # bars centred on 0, 0.05, ..., 1: each ratio of 20 candidates has its own bar


def is_balanced(group: CandidateGroup, min_ratio: float, max_ratio: float) -> bool:
    positives = sum(c.correct for c in group.candidates)
    ratio = positives / len(group.candidates)
    return 0 < positives < len(group.candidates) and min_ratio <= ratio <= max_ratio


def iter_groups(raw: bytes, uri: str) -> Iterator[CandidateGroup]:
    """The groups of a JSONL object one at a time: a caller that keeps a compact form never holds them all."""
    for line_no, line in enumerate(io.BytesIO(raw), start=1):
        try:
            yield CandidateGroup.model_validate_json(line)
        except ValueError as exc:
            raise IntegrityError(
                f"{uri}: line {line_no} is not a candidate group ({str(exc).splitlines()[0]})"
            ) from exc


def parse_groups(raw: bytes, uri: str) -> list[CandidateGroup]:
    return list(iter_groups(raw, uri))


def latest_version(ctx: StageContext) -> int:
    if not ctx.store.exists(f"{BALANCED}/latest"):
        return 0
    text = ctx.store.get_bytes(f"{BALANCED}/latest").decode().strip()
    if not (text.startswith("v") and text[1:].isdigit()):
        raise IntegrityError(f"{ctx.store.uri_for(f'{BALANCED}/latest')}: expected 'v<n>', found {text[:20]!r}")
    return int(text[1:])


def stream_balanced(ctx: StageContext, version: int | None = None) -> tuple[int, Iterator[CandidateGroup]]:
    """A version of the balanced set (default: latest), verified against the sha256 in its manifest, as a stream of
    groups (the verified bytes are held, the parsed groups only one at a time)."""
    version = latest_version(ctx) if version is None else version
    if version == 0:
        return 0, iter(())
    key = f"{BALANCED}/v{version}.jsonl"
    raw, _ = ctx.read_verified(key, f"{BALANCED}/v{version}.manifest.json")
    return version, iter_groups(raw, ctx.store.uri_for(key))


def load_balanced(ctx: StageContext, version: int | None = None) -> tuple[int, list[CandidateGroup]]:
    version, groups = stream_balanced(ctx, version)
    return version, list(groups)


class _Tally:
    """The stats of a stream of groups, without holding the groups: counts add, and so do histograms."""

    def __init__(self) -> None:
        self.queries = self.candidates = self.positives = 0
        self.histogram = np.zeros(RATIO_BINS, dtype=np.int64)

    def add(self, groups: list[CandidateGroup]) -> None:
        self.queries += len(groups)
        self.candidates += sum(len(g.candidates) for g in groups)
        self.positives += sum(c.correct for g in groups for c in g.candidates)
        ratios = [g.positive_ratio for g in groups]
        self.histogram += np.histogram(ratios, bins=RATIO_BINS, range=(-0.025, 1.025))[0]

    def stats(self) -> dict:
        return {
            "queries": self.queries,
            "candidates": self.candidates,
            "positive_ratio": round(self.positives / self.candidates, 4) if self.candidates else 0.0,
            "ratio_histogram": self.histogram.tolist(),
        }


def _stats(groups: list[CandidateGroup]) -> dict:
    tally = _Tally()
    tally.add(groups)
    return tally.stats()


def _export(groups: list[CandidateGroup], version: int) -> dict:
    """The interchange file: every balanced query's pool and scored candidates, keyed by question_id."""
    return {"version": f"v{version}", "queries": {str(g.question_id): g.model_dump(mode="json") for g in groups}}


def _scan_round(ctx: StageContext, round_id: str) -> tuple[list[CandidateGroup], dict, dict[str, str]]:
    """Read the round's shards one at a time, keeping only the balanced groups: memory holds the accepted groups and
    one shard, not the whole round. -> (accepted, stats of everything scored, sha256 of each shard)"""
    plan = ctx.read_plan(plan_key(round_id))
    prefix = round_prefix(round_id)
    missing = [i for i in plan.shard_ids() if not ctx.store.exists(shard_key(prefix, i))]
    if missing:
        raise DataError(f"round {round_id}: shards {missing[:10]} have no output yet; run `leverplus score` first")
    rl, scored, accepted, shas = ctx.settings.rl, _Tally(), [], {}
    seen: set[int] = set()
    twice: list[int] = []
    for i in plan.shard_ids():
        key = shard_key(prefix, i)
        raw = read_shard(ctx, key)  # verified against its manifest, hashed and parsed from one read
        shas[key.removeprefix(prefix + "/")] = hashlib.sha256(raw).hexdigest()
        groups = parse_groups(raw, ctx.store.uri_for(key))
        check_groups(groups, ctx.settings, f"filter round {round_id}")
        twice += [g.question_id for g in groups if g.question_id in seen]
        seen.update(g.question_id for g in groups)
        scored.add(groups)
        accepted += [g for g in groups if is_balanced(g, rl.min_pos_ratio, rl.max_pos_ratio)]
    if twice:
        raise DataError(f"round {round_id}: question_ids {sorted(set(twice))[:5]} were scored twice; nothing published")
    return accepted, scored.stats(), shas


def _published_by(ctx: StageContext, round_id: str) -> tuple[int, int] | None:
    """(version, added) when this round already published a version: a rerun after a kill between publishing and the
    round manifest reports what the first run did instead of "nothing new" (the newest versions are read first)."""
    catalog = Catalog(ctx.store)
    for version in range(latest_version(ctx), 0, -1):
        stats = catalog.version(version)
        if stats.round_id == round_id:
            return version, stats.added_queries
    return None


def _publish(ctx: StageContext, round_id: str, accepted: list[CandidateGroup]) -> tuple[int, int]:
    """Add the round's new balanced queries as the next version; `latest` moves last. -> (version, added)"""
    if (done := _published_by(ctx, round_id)) is not None:
        ctx.log.info("this round already published its version", round_id=round_id, version=f"v{done[0]}")
        return done
    version, current = load_balanced(ctx)
    check_groups(current, ctx.settings, f"merge round {round_id} into balanced set v{version}")
    present = {g.question_id for g in current}
    added = [g for g in accepted if g.question_id not in present]
    if not added:
        ctx.log.info("nothing new to publish", round_id=round_id, accepted=len(accepted), latest=f"v{version}")
        return version, 0
    merged = sorted(current + added, key=lambda g: g.question_id)
    version += 1
    sha = ctx.put_jsonl(f"{BALANCED}/v{version}.jsonl", merged)
    manifest = ctx.manifest(
        "balanced-set",
        inputs={"round": ctx.store.uri_for(round_prefix(round_id))},
        outputs={f"v{version}.jsonl": sha},
        stats={**_stats(merged), "round_id": round_id, "added_queries": len(added)},
    )
    ctx.put_json(f"{BALANCED}/v{version}.manifest.json", manifest)
    ctx.store.put_bytes(MERGED_EXPORT, json.dumps(_export(merged, version), sort_keys=True).encode())
    ctx.store.put_bytes(f"{BALANCED}/latest", f"v{version}\n".encode())
    ctx.log.info("balanced set published", version=f"v{version}", added=len(added), total=len(merged))
    return version, len(added)


def run_filter(ctx: StageContext, round_id: str) -> dict:
    manifest_key = f"{round_prefix(round_id)}/manifest.json"
    if (done := Catalog(ctx.store).round(round_id)) is not None:  # filtered: a retried or continued run reports it
        ctx.log.info("round already filtered", uri=ctx.store.uri_for(manifest_key))
        return done.model_dump()
    accepted, scored, shard_shas = _scan_round(ctx, round_id)
    with lease(ctx.store, LEASE, owner=f"filter of round {round_id}"):
        version, added = _publish(ctx, round_id, accepted)
    stats = {
        "scored_queries": scored["queries"],
        "accepted_queries": len(accepted),
        "added_queries": added,
        "scored": scored,
        "accepted": _stats(accepted),
        "version": f"v{version}",
    }
    ctx.put_json(
        manifest_key,
        ctx.manifest("round", inputs={"plan": ctx.store.uri_for(plan_key(round_id))}, outputs=shard_shas, stats=stats),
    )
    return stats
