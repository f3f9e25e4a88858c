"""`leverplus verify`: check a whole store and report every problem.

balanced set  every segment parses, matches the sha256 its versions record and holds the ids its ids file lists;
              every version's segments hold each question_id once, and the stats its manifest records (queries,
              candidates, positives, ratio histogram, added) are recomputed from them;
              `latest` names a version that exists
shards        every shard (rounds, SFT data, eval) matches its own manifest and, for a filtered round, the sha256
              its round's manifest recorded; round shards parse as candidate groups
plans         every plan with parts (what fan-out pods read) matches them and its index
reports       every file of a finished report matches the sha256 in the report's manifest
checkpoints   every checkpoint loads strictly and matches the sha256 in its config; every unfinished stage's
              epoch state matches its own digest
runs          every run record reads through its schema (ids, types, ranges) and names its own folder
features      every feature file loads
datasets      every split of every dataset under datasets/ loads (JSON, 10 answers, annotations match)
stale         temp objects of killed writes older than an hour, and the publishing lease, are listed (not problems)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from leverplus.catalog import Catalog, RoundStats
from leverplus.data import load_split
from leverplus.data.schemas import SPLITS
from leverplus.data.vqav2 import annotations_file, questions_file
from leverplus.errors import IntegrityError, LeverPlusError, NotFoundError
from leverplus.features import FeatureTable
from leverplus.policy.resume import check_state
from leverplus.records import Manifest, PlanIndex
from leverplus.run_record import read_record
from leverplus.stages.balanced import (
    Segment,
    SetTally,
    ids_key,
    latest_version,
    parse_groups,
    parse_line,
    segment_ids,
    segments,
    stream_lines,
    tally_groups,
)
from leverplus.stages.context import StageContext
from leverplus.stages.filter import is_balanced
from leverplus.stages.layout import BALANCED, LEASE, plan_part_key
from leverplus.stages.report import read_report_file
from leverplus.stages.shards import read_shard
from leverplus.stages.train import RESUME_FILE
from leverplus.store import open_store
from leverplus.store.clean import debris

__all__ = ["run_verify"]


def _balanced(ctx: StageContext, keys: list[str], check: Callable[[str, Callable[[], object]], None]) -> None:
    """Each segment is read once however many versions list it; a version is checked through its segments' ids."""
    store, catalog = ctx.store, Catalog(ctx.store)
    numbers = catalog.version_numbers()
    listed: dict[int, list[Segment]] = {}
    for version in numbers:
        check(_manifest(version), lambda v=version: listed.__setitem__(v, segments(store, v)))
    ids: dict[str, list[int]] = {}
    tallies: dict[str, SetTally] = {}

    def read(segment: Segment) -> None:
        groups = [parse_line(line, store.uri_for(segment.key), n)
                  for n, line in enumerate(stream_lines(store, segment), start=1)]  # fmt: skip
        found = [g.question_id for g in groups]
        tallies[segment.key] = tally_groups(groups)
        if len(found) != len(set(found)):
            raise LeverPlusError(f"{store.uri_for(segment.key)}: a question_id appears twice")
        if segment.ids_sha256 is not None and segment_ids(store, segment) != sorted(found):
            raise IntegrityError(f"{store.uri_for(ids_key(segment.key))}: differs from the ids in its segment")
        ids[segment.key] = found

    for segment in sorted({s for parts in listed.values() for s in parts}, key=lambda s: s.key):
        check(segment.key, lambda s=segment: read(s))

    owner: dict[int, str] = {}  # question id -> the first segment holding it
    pairs: set[tuple[str, str]] = set()  # two segments that share an id: an error in a version listing both
    for key, found in ids.items():
        for question_id in found:
            if (first := owner.setdefault(question_id, key)) != key:
                pairs.add((first, key))

    def whole(version: int) -> None:
        parts = {s.key for s in listed[version]}
        if not parts <= ids.keys():
            return  # an unreadable segment is a problem already
        if any(a in parts and b in parts for a, b in pairs):
            raise LeverPlusError(f"balanced v{version}: a question_id appears in two of its segments")
        total = SetTally()
        for key in parts:
            total = total.merge(tallies[key])
        recorded = catalog.version(version).model_dump()
        if any(k.startswith(f"rounds/{recorded['round_id']}/") for k in keys) and not store.exists(
            round_manifest := f"rounds/{recorded['round_id']}/manifest.json"
        ):  # later plans size themselves by its acceptance
            raise LeverPlusError(f"{store.uri_for(round_manifest)} is missing: v{version} was published from it")
        held = total.stats() | {"added_queries": len(ids[listed[version][-1].key])}
        if recorded["positives"] is None or recorded["segments"] is None:  # written before they were recorded
            held = {"queries": held["queries"]}
        for name, value in held.items():
            if recorded[name] != value:
                raise LeverPlusError(f"balanced v{version}: its manifest says {name} {_short(recorded[name])}, its "
                                     f"segments hold {_short(value)}")  # fmt: skip

    for version in listed:
        check(_manifest(version), lambda v=version: whole(v))

    check(f"{BALANCED}/latest", lambda: latest_version(store))  # a pointer or a gap naming a missing manifest


def _manifest(version: int) -> str:
    return f"{BALANCED}/v{version}.manifest.json"


def _short(value: object) -> str:
    return str(value) if len(str(value)) < 40 else str(value)[:37] + "..."


def _shards(ctx: StageContext, keys: list[str], check: Callable[[str, Callable[[], object]], None]) -> None:
    """Every shard against its manifest (and its round's); every filtered round's stats recomputed from its shards."""
    catalog, recorded, rounds = Catalog(ctx.store), {}, {}
    for round_id in sorted({k.split("/")[1] for k in keys if k.startswith("rounds/") and k.endswith("/manifest.json")
                            and k.count("/") == 2}):  # fmt: skip

        def read(r: str = round_id) -> None:
            rounds[r], outputs = catalog.round_outputs(r)
            recorded.update({f"rounds/{r}/{rel}": sha for rel, sha in outputs.items()})

        check(f"rounds/{round_id}/manifest.json", read)
    tallies: dict[str, tuple[SetTally, SetTally, list[str]]] = {}  # round -> scored, accepted, shards read

    def one(key: str) -> None:
        raw = read_shard(ctx, key)  # against the shard's own manifest
        if key in recorded and hashlib.sha256(raw).hexdigest() != recorded[key]:
            raise IntegrityError(f"{ctx.store.uri_for(key)}: sha256 differs from its round's manifest")
        if key.startswith("rounds/"):
            groups, round_id = parse_groups(raw, ctx.store.uri_for(key)), key.split("/")[1]
            scored, accepted, read = tallies.get(round_id, (SetTally(), SetTally(), []))
            if (stats := rounds.get(round_id)) is not None and stats.balanced_range is not None:
                accepted = accepted.merge(tally_groups(g for g in groups if is_balanced(g, *stats.balanced_range)))
            tallies[round_id] = (scored.merge(tally_groups(groups)), accepted, [*read, key])

    for key in (k for k in keys if "/shards/" in k and k.endswith(".jsonl")):
        check(key, lambda k=key: one(k))
    for round_id, stats in rounds.items():
        joined = {k for k in recorded if k.startswith(f"rounds/{round_id}/")}
        scored, accepted, read = tallies.get(round_id, (SetTally(), SetTally(), []))
        if set(read) == joined:  # else a shard is a problem already
            check(
                f"rounds/{round_id}/manifest.json",
                lambda r=round_id, s=stats, t=(scored, accepted): _round_stats(r, s, *t),
            )


def _round_stats(round_id: str, stats: RoundStats, scored: SetTally, accepted: SetTally) -> None:
    """A round's recorded stats against its shards."""
    held = {"scored": scored.stats()}
    if stats.balanced_range is not None:
        held["accepted"] = accepted.stats()
    for name, value in held.items():
        recorded = getattr(stats, name).model_dump()
        differs = [k for k, v in value.items() if recorded.get(k) is not None and recorded[k] != v]
        if differs:
            field = differs[0]
            raise LeverPlusError(f"round {round_id}: its manifest's {name} {field} is {_short(recorded[field])}, its "
                                 f"shards hold {_short(value[field])}")  # fmt: skip


def _plan_parts(ctx: StageContext, index_key: str) -> None:
    """A plan and its parts agree with its index: a plan.json edited after its parts were written is reported (the
    fan-out pods read the parts, so such an edit would never reach them)."""
    index = ctx.parse(PlanIndex, ctx.store.get_bytes(index_key), index_key, "a plan index")
    plan_key = index_key.removesuffix("/plan/index.json") + "/plan.json"
    if ctx.store.sha256(plan_key) != index.plan_sha256:
        raise IntegrityError(f"{ctx.store.uri_for(plan_key)}: differs from the plan its parts were written from "
                             "(edited afterwards?); `leverplus plan --force` rewrites both")  # fmt: skip
    for shard, sha in enumerate(index.shards):
        if ctx.store.sha256(key := plan_part_key(plan_key, shard)) != sha:
            raise IntegrityError(f"{ctx.store.uri_for(key)}: sha256 differs from {ctx.store.uri_for(index_key)}")
    queries = plan_key.removesuffix("plan.json") + "queries.json"
    if index.queries_sha256 is not None and _sha256_or_none(ctx, queries) != index.queries_sha256:
        raise IntegrityError(f"{ctx.store.uri_for(queries)}: missing or differs from its plan (readers use the plan "
                             "instead); `leverplus plan --force` rewrites it")  # fmt: skip


def _sha256_or_none(ctx: StageContext, key: str) -> str | None:
    return ctx.store.sha256(key) if ctx.store.exists(key) else None


STALE_TEMP_S = 3600.0  # a write in flight takes seconds to minutes; an hour-old temp object is debris


def _stale(ctx: StageContext) -> list[str]:
    """Debris of interrupted work: not corruption (readers never see it), but worth cleaning."""
    temps, lease = debris(ctx.store, LEASE, STALE_TEMP_S)
    lines = [f"temp object {t.ident} of {ctx.store.uri_for(t.key)}, {t.age}" for t in temps]
    return lines + ([f"lease {lease}"] if lease else [])


def _report(ctx: StageContext, key: str, check: Callable[[str, Callable[[], object]], None]) -> None:
    run_id = key.split("/")[1]
    for name in Manifest.model_validate_json(ctx.store.get_bytes(key)).outputs:
        check(f"report {run_id}/{name}", lambda n=name: read_report_file(ctx, run_id, n))


def _dataset_splits(keys: list[str]) -> list[tuple[str, str]]:
    found = set()
    for key in (k for k in keys if k.startswith("datasets/") and k.count("/") == 2):
        name, file = key.split("/")[1:]
        found |= {(name, split) for split in SPLITS if file in (questions_file(split), annotations_file(split))}
    return sorted(found)


def run_verify(ctx: StageContext) -> tuple[int, list[str], list[str]]:
    """(objects checked, problems, stale debris)."""
    keys = ctx.store.list()
    if not keys:
        raise NotFoundError(f"{ctx.store.uri} holds no objects: is the store URI right?")
    problems: list[str] = []
    checked = 0

    def check(what: str, fn: Callable[[], object]) -> None:
        nonlocal checked
        checked += 1
        try:
            fn()
        except (LeverPlusError, ValueError, KeyError) as exc:
            problems.append(f"{what}: {exc}")

    _balanced(ctx, keys, check)
    _shards(ctx, keys, check)
    for key in (k for k in keys if k.endswith("/plan/index.json")):
        check(key, lambda k=key: _plan_parts(ctx, k))
    for key in (k for k in keys if k.endswith("/report/manifest.json")):
        check(key, lambda k=key: _report(ctx, k, check))
    for key in (k for k in keys if "/checkpoints/" in k and k.endswith("/config.json")):
        prefix = key.removesuffix("/config.json")
        check(prefix, lambda p=prefix: ctx.load_policy(p))
    for key in (k for k in keys if k.startswith("runs/") and k.endswith("/run.json")):
        check(key, lambda k=key: read_record(ctx.store, k.split("/")[1]))
    for key in (k for k in keys if k.endswith(f"/{RESUME_FILE}")):
        check(key, lambda k=key: check_state(ctx.store, k))
    for key in (k for k in keys if k.startswith("features/") and k.endswith(".safetensors")):
        _, encoder, name = key.split("/")
        check(key, lambda e=encoder, n=name: FeatureTable.load(ctx.store, e, n.removesuffix(".safetensors")))
    for name, split in _dataset_splits(keys):  # a split with either of its files: both must load and agree
        root = open_store(ctx.store.uri_for(f"datasets/{name}"), ctx.settings.store)
        check(f"dataset {name}/{split}", lambda r=root, s=split: load_split(r, s))
    return checked, problems, _stale(ctx)
