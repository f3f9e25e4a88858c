"""`leverplus filter`: join every shard of a round, keep balanced queries, and publish the next version of the
cumulative balanced set.

Balanced: at least one positive and one negative, and min_pos_ratio <= positives / candidates <= max_pos_ratio.
The set is keyed by question_id: a round adds only queries not already present. Versions are immutable
(v1, v2, ...) and made of segments (stages/balanced.py): a round's new groups are written once; `latest` moves only
after the version is written. The round's shards stay in the store, so rejected queries' groups are never lost.

Memory does not grow with the round: shards are read one at a time, each line is parsed with the standard JSON
parser (the shard is verified against its manifest first; training re-reads the groups through the full schema),
and the accepted lines wait in a local spool file until they are published.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from types import TracebackType

from leverplus.catalog import Catalog
from leverplus.errors import DataError, IntegrityError
from leverplus.records import CandidateGroup
from leverplus.stages.balanced import (
    Accepted,
    SetTally,
    latest_version,
    move_pointer,
    parse_line,
    stream_balanced,
    write_version,
)
from leverplus.stages.compat import check_groups, group_facts
from leverplus.stages.context import StageContext
from leverplus.stages.layout import LEASE, plan_key, round_prefix, shard_key
from leverplus.stages.shards import read_shard
from leverplus.store.lease import lease

__all__ = ["is_balanced", "run_filter"]


def is_balanced(group: CandidateGroup, min_ratio: float, max_ratio: float) -> bool:
    positives = sum(c.correct for c in group.candidates)
    return _balanced(positives, len(group.candidates), min_ratio, max_ratio)


def _balanced(positives: int, candidates: int, min_ratio: float, max_ratio: float) -> bool:
    return 0 < positives < candidates and min_ratio <= positives / candidates <= max_ratio


class _Spool:
    """The round's accepted groups: their lines in a local temp file, their ids and counts in memory."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="leverplus-accepted-")  # noqa: SIM115 -- closed by __exit__
        self.rows: list[tuple[int, int, int, int, int]] = []  # (question_id, offset, length, positives, candidates)

    def add(self, question_id: int, line: bytes, positives: int, candidates: int) -> None:
        self.rows.append((question_id, self.file.tell(), len(line), positives, candidates))
        self.file.write(line)

    def accepted(self) -> Iterator[Accepted]:
        """Sorted by question_id, one line read at a time."""
        for question_id, offset, length, positives, candidates in sorted(self.rows):
            self.file.seek(offset)
            yield Accepted(question_id, self.file.read(length), positives, candidates)

    def tally(self) -> SetTally:
        tally = SetTally()
        tally.add([r[3] for r in self.rows], [r[4] for r in self.rows])
        return tally

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.file.close()


class _Reader:
    """What the filter needs from a scored line -- id, counts, and the facts that say how it was scored -- read
    with the standard JSON parser. Anything unexpected is re-read through the schema, whose error names the line."""

    def __init__(self, ctx: StageContext, round_id: str) -> None:
        self.ctx, self.action = ctx, f"filter round {round_id}"
        self.want = group_facts(ctx.settings)

    def read(self, line: bytes, uri: str, line_no: int) -> tuple[int, int, int]:
        """-> (question_id, positives, candidates)"""
        try:
            group = json.loads(line)
            candidates = group["candidates"]
            positives = sum(c["correct"] is True for c in candidates)
            ok = (
                all(group.get(f) == v for f, v in self.want.items())
                and len(candidates) == group["candidates_per_query"]
            )
            if ok and type(group["question_id"]) is int:
                return group["question_id"], positives, len(candidates)
        except (ValueError, KeyError, TypeError):
            pass
        check_groups([parse_line(line, uri, line_no)], self.ctx.settings, self.action)  # raises naming the field
        raise IntegrityError(f"{uri}: line {line_no} could not be read as a candidate group")


def _scan_round(ctx: StageContext, round_id: str, spool: _Spool) -> tuple[SetTally, dict[str, str]]:
    """Read the round's shards one at a time, spooling the balanced groups' lines: memory holds one shard and a few
    numbers per accepted group. -> (tally of everything scored, sha256 of each shard)"""
    shard_ids = range(len(Catalog(ctx.store).planned_by_shard(round_id)))  # not the plan: pools are most of it
    if not shard_ids:
        raise DataError(f"round {round_id} has no plan ({ctx.store.uri_for(plan_key(round_id))}); run `leverplus plan`")
    prefix = round_prefix(round_id)
    missing = [i for i in shard_ids if not ctx.store.exists(shard_key(prefix, i))]
    if missing:
        raise DataError(f"round {round_id}: shards {missing[:10]} have no output yet; run `leverplus score` first")
    rl, scored, shas, reader = ctx.settings.rl, SetTally(), {}, _Reader(ctx, round_id)
    seen: set[int] = set()
    twice: list[int] = []
    for i in shard_ids:
        key = shard_key(prefix, i)
        raw = read_shard(ctx, key)  # verified against its manifest, hashed and parsed from one read
        shas[key.removeprefix(prefix + "/")] = hashlib.sha256(raw).hexdigest()
        uri, positives, candidates = ctx.store.uri_for(key), [], []
        for line_no, line in enumerate(raw.splitlines(keepends=True), start=1):
            question_id, pos, n = reader.read(line, uri, line_no)
            if question_id in seen:
                twice.append(question_id)
            seen.add(question_id)
            positives.append(pos)
            candidates.append(n)
            if _balanced(pos, n, rl.min_pos_ratio, rl.max_pos_ratio):
                spool.add(question_id, line, pos, n)
        scored.add(positives, candidates)
    if twice:
        raise DataError(f"round {round_id}: question_ids {sorted(set(twice))[:5]} were scored twice; nothing published")
    return scored, shas


def _published_by(ctx: StageContext, round_id: str) -> tuple[int, int] | None:
    """(version, added) when this round already published a version: a rerun after a kill between publishing and the
    round manifest reports what the first run did instead of "nothing new" (the newest versions are read first)."""
    catalog = Catalog(ctx.store)
    for version in range(latest_version(ctx.store), 0, -1):
        stats = catalog.version(version)
        if stats.round_id == round_id:
            return version, stats.added_queries
    return None


def _publish(ctx: StageContext, round_id: str, spool: _Spool) -> tuple[int, int]:
    """Add the round's new balanced queries as the next version; `latest` moves last. -> (version, added)"""
    if (done := _published_by(ctx, round_id)) is not None:
        ctx.log.info("this round already published its version", round_id=round_id, version=f"v{done[0]}")
        move_pointer(ctx, latest_version(ctx.store))  # a filter killed before the pointer moved
        return done
    version, current = stream_balanced(ctx.store)
    first = next(current, None)
    current.close()  # one group is all it needs: release the open segment
    if first is not None:  # every merge checked the set is homogeneous: one group tells
        check_groups([first], ctx.settings, f"merge round {round_id} into balanced set v{version}")
    return write_version(ctx, round_id, spool.accepted())


def run_filter(ctx: StageContext, round_id: str) -> dict:
    manifest_key = f"{round_prefix(round_id)}/manifest.json"
    if (done := Catalog(ctx.store).round(round_id)) is not None:  # filtered: a retried or continued run reports it
        ctx.log.info("round already filtered", uri=ctx.store.uri_for(manifest_key))
        return done.model_dump(mode="json")
    with _Spool() as spool:
        scored, shard_shas = _scan_round(ctx, round_id, spool)
        with lease(ctx.store, LEASE, owner=f"filter of round {round_id}"):
            version, added = _publish(ctx, round_id, spool)
        accepted = spool.tally().stats()
    stats = {
        "scored_queries": scored.queries,
        "accepted_queries": accepted["queries"],
        "added_queries": added,
        "scored": scored.stats(),
        "accepted": accepted,
        "version": f"v{version}",
        "balanced_range": [ctx.settings.rl.min_pos_ratio, ctx.settings.rl.max_pos_ratio],
    }
    ctx.put_json(
        manifest_key,
        ctx.manifest("round", inputs={"plan": ctx.store.uri_for(plan_key(round_id))}, outputs=shard_shas, stats=stats),
    )
    return stats
