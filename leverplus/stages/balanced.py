"""The cumulative balanced set on disk: versions made of immutable segments, so a version costs what it adds.

    rl-data/balanced/segments/<round-id>.jsonl      the groups a round added, sorted by question_id, written once
    rl-data/balanced/segments/<round-id>.ids.json   their question ids (sorted JSON list): merges read these
    rl-data/balanced/v<n>.manifest.json             stats.segments lists the version's segments in order;
                                                    outputs holds the sha256 of every segment and ids file
    rl-data/balanced/latest                         "v<n>", moved last: a pointer for outside readers

Creating a version's manifest (exclusively: a version number never names other content) is what publishes it; readers
take the newest manifest and check the pointer against it (catalog.Catalog.published).

Versions written before segments existed are one file, `v<n>.jsonl`, sorted by question_id; they still read, and the
first segmented version after one lists that file as its first segment. Readers verify every segment against the
sha256 its version's manifest records while they stream it: a version of any size is read one line at a time.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leverplus.catalog import Catalog
from leverplus.errors import DataError, IntegrityError, NotFoundError
from leverplus.records import CandidateGroup, canonical_json
from leverplus.stages.context import StageContext
from leverplus.stages.layout import BALANCED, MERGED_EXPORT, round_prefix, segment_key
from leverplus.store import Store
from leverplus.store.base import CHUNK

__all__ = [
    "RATIO_BINS",
    "Accepted",
    "Segment",
    "SetTally",
    "export_merged",
    "ids_key",
    "iter_groups",
    "latest_version",
    "load_balanced",
    "move_pointer",
    "parse_groups",
    "present_ids",
    "segment_ids",
    "segments",
    "stream_balanced",
    "stream_lines",
    "tally_groups",
    "write_version",
]


@dataclass(frozen=True)
class Segment:
    key: str  # store key of the JSONL object
    sha256: str
    ids_sha256: str | None  # None: a single-file version's own file, whose ids are read from the file itself


def ids_key(segment_key: str) -> str:
    return segment_key.removesuffix(".jsonl") + ".ids.json"


def _relative(key: str) -> str:
    return key.removeprefix(f"{BALANCED}/")


def latest_version(store: Store) -> int:
    return Catalog(store).published()


def segments(store: Store, version: int) -> list[Segment]:
    """The segments of a version, in order, with the checksums its manifest records."""
    key = f"{BALANCED}/v{version}.manifest.json"
    if not store.exists(key):
        raise IntegrityError(f"balanced version v{version} does not exist in {store.uri} ({key} is missing)")
    stats, outputs = Catalog(store).version_outputs(version)
    names = stats.segments if stats.segments is not None else [f"v{version}.jsonl"]
    found = []
    for name in names:
        if name not in outputs:
            raise IntegrityError(f"{store.uri_for(key)}: segment {name} has no sha256 in outputs")
        ids = outputs.get(_relative(ids_key(name))) if stats.segments is not None else None
        found.append(Segment(f"{BALANCED}/{name}", outputs[name], ids))
    return found


def stream_lines(store: Store, segment: Segment) -> Iterator[bytes]:
    """The segment's lines, one at a time; the sha256 of everything read is checked at the end, so a truncated or
    altered segment fails (naming it) before a reader that consumes the whole stream finishes."""
    digest, rest = hashlib.sha256(), b""
    with store.open(segment.key) as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            yield from lines
    if digest.hexdigest() != segment.sha256:  # before the last line: a truncated one is named as such
        raise IntegrityError(f"{store.uri_for(segment.key)}: sha256 differs from its manifest (truncated or altered)")
    if rest:
        yield rest


def parse_line(line: bytes, uri: str, line_no: int) -> CandidateGroup:
    try:
        return CandidateGroup.model_validate_json(line)
    except ValueError as exc:
        raise IntegrityError(f"{uri}: line {line_no} is not a candidate group ({str(exc).splitlines()[0]})") from exc


def iter_groups(raw: bytes, uri: str) -> Iterator[CandidateGroup]:
    """The groups of a JSONL object one at a time: a caller that keeps a compact form never holds them all."""
    for line_no, line in enumerate(io.BytesIO(raw), start=1):
        yield parse_line(line, uri, line_no)


def parse_groups(raw: bytes, uri: str) -> list[CandidateGroup]:
    return list(iter_groups(raw, uri))


def stream_balanced(store: Store, version: int | None = None) -> tuple[int, Generator[CandidateGroup]]:
    """A version of the balanced set (default: latest) as a stream of verified groups, segment after segment (a
    segment is sorted by question_id; the version as a whole is not: sort what you keep)."""
    version = latest_version(store) if version is None else version

    def groups() -> Generator[CandidateGroup]:
        for segment in segments(store, version) if version else []:
            uri = store.uri_for(segment.key)
            for line_no, line in enumerate(stream_lines(store, segment), start=1):
                yield parse_line(line, uri, line_no)

    return version, groups()


def load_balanced(store: Store, version: int | None = None) -> tuple[int, list[CandidateGroup]]:
    """A whole version in memory, sorted by question_id (tests and small sets; training streams)."""
    version, groups = stream_balanced(store, version)
    return version, sorted(groups, key=lambda g: g.question_id)


def segment_ids(store: Store, segment: Segment) -> list[int]:
    """A segment's question ids: from its ids file (verified), or from a single-file version's own lines."""
    if segment.ids_sha256 is None:  # a single-file version: its ids are in the file
        return [json.loads(line)["question_id"] for line in stream_lines(store, segment)]
    key = ids_key(segment.key)
    raw = store.get_bytes(key)
    if hashlib.sha256(raw).hexdigest() != segment.ids_sha256:
        raise IntegrityError(f"{store.uri_for(key)}: sha256 differs from its manifest (truncated or altered)")
    return json.loads(raw)


def present_ids(store: Store, listed: list[Segment]) -> set[int]:
    """Every question id in a version's segments, from their id files: a merge never reads the groups themselves."""
    present: set[int] = set()
    for segment in listed:
        present.update(segment_ids(store, segment))
    return present


RATIO_BINS = 21  # bars centred on 0, 0.05, ..., 1: each ratio of 20 candidates has its own bar


class SetTally:
    """The stats of a set of groups, added up without holding the groups: counts add, and so do histograms."""

    def __init__(self) -> None:
        self.queries = self.candidates = self.positives = 0
        self.histogram = np.zeros(RATIO_BINS, dtype=np.int64)

    def add(self, positives: list[int], candidates: list[int]) -> None:
        """One entry per group: its positive and candidate counts."""
        self.queries += len(positives)
        self.candidates += sum(candidates)
        self.positives += sum(positives)
        ratios = [p / n for p, n in zip(positives, candidates, strict=True)]
        self.histogram += np.histogram(ratios, bins=RATIO_BINS, range=(-0.025, 1.025))[0]

    def merge(self, other: SetTally) -> SetTally:
        total = SetTally()
        total.queries, total.candidates = self.queries + other.queries, self.candidates + other.candidates
        total.positives, total.histogram = self.positives + other.positives, self.histogram + other.histogram
        return total

    def stats(self) -> dict:
        return {
            "queries": self.queries,
            "candidates": self.candidates,
            "positives": self.positives,
            "positive_ratio": round(self.positives / self.candidates, 4) if self.candidates else 0.0,
            "ratio_histogram": self.histogram.tolist(),
        }


def tally_groups(groups: Iterable[CandidateGroup]) -> SetTally:
    tally, positives, candidates = SetTally(), [], []
    for g in groups:
        positives.append(sum(c.correct for c in g.candidates))
        candidates.append(len(g.candidates))
    tally.add(positives, candidates)
    return tally


def _version_tally(store: Store, version: int) -> SetTally:
    """A version's stats as a tally to add to; a single-file version from before `positives` was recorded is
    counted from its file (once: the next version records it)."""
    tally = SetTally()
    if version == 0:
        return tally
    stats = Catalog(store).version(version)
    if stats.positives is None:
        return tally_groups(stream_balanced(store, version)[1])
    tally.queries, tally.candidates, tally.positives = stats.queries, stats.candidates, stats.positives
    tally.histogram = np.asarray(stats.ratio_histogram, dtype=np.int64)
    return tally


@dataclass(frozen=True)
class Accepted:
    """A balanced group of the round being published: its id, its line as scored, and its counts."""

    question_id: int
    line: bytes
    positives: int
    candidates: int


def write_version(ctx: StageContext, round_id: str, accepted: Iterable[Accepted]) -> tuple[int, int]:
    """Publish the round's accepted groups (sorted by question_id) that are not in the latest version as the next
    version: one new segment and its ids, then the manifest listing every segment, then `latest`.
    -> (version, added); (latest, 0) when the round adds nothing. The caller holds the lease."""
    store = ctx.store
    previous = latest_version(store)
    listed = segments(store, previous) if previous else []
    present = present_ids(store, listed)
    key = segment_key(round_id)
    added, tally, positives, candidates, last = [], SetTally(), [], [], None
    with tempfile.NamedTemporaryFile(prefix="leverplus-segment-") as spool:
        for group in accepted:
            if last is not None and group.question_id <= last:
                raise DataError(f"round {round_id}: accepted groups must come sorted by question_id, once each")
            last = group.question_id
            if group.question_id in present:
                continue
            spool.write(group.line.rstrip(b"\n") + b"\n")
            added.append(group.question_id)
            positives.append(group.positives)
            candidates.append(group.candidates)
        if not added:
            ctx.log.info("nothing new to publish", round_id=round_id, latest=f"v{previous}")
            return previous, 0
        spool.flush()
        tally.add(positives, candidates)
        outputs = {_relative(key): store.put_file(key, Path(spool.name)).sha256}
    outputs[_relative(ids_key(key))] = ctx.put_json(ids_key(key), added)
    names = []
    for segment in listed:
        names.append(_relative(segment.key))
        outputs[names[-1]] = segment.sha256
        ids = segment.ids_sha256 or ctx.put_json(ids_key(segment.key), sorted(segment_ids(store, segment)))
        outputs[_relative(ids_key(segment.key))] = ids
    names.append(_relative(key))
    version, total = previous + 1, _version_tally(store, previous).merge(tally)  # the next number after what exists
    stats = {**total.stats(), "round_id": round_id, "added_queries": len(added), "segments": names}
    manifest = ctx.manifest("balanced-set", inputs={"round": store.uri_for(round_prefix(round_id))}, outputs=outputs,
                            stats=stats)  # fmt: skip
    _create_manifest(store, version, canonical_json(manifest))
    ctx.log.info("balanced set published", version=f"v{version}", added=len(added), total=total.queries)
    move_pointer(ctx, version)
    return version, len(added)


def _create_manifest(store: Store, version: int, data: bytes) -> None:
    """Publish: create v<n>.manifest.json only if absent (an exclusive create, a conditional put on S3), so a version
    number never names other content, even when two writers race for it."""
    key = f"{BALANCED}/v{version}.manifest.json"
    if store.put_if_absent(key, data):
        return
    theirs, ours = store.sha256(key), hashlib.sha256(data).hexdigest()
    if theirs != ours:
        raise IntegrityError(
            f"{store.uri_for(key)} exists (sha256 {theirs[:12]}); refusing to replace it with other content "
            f"(sha256 {ours[:12]}): a published version never changes"
        )


def move_pointer(ctx: StageContext, version: int) -> None:
    """After v<version> is published: the interchange file (when enabled) and `latest`, for outside readers, unless
    they already name it. A filter killed between the manifest and here has its rerun call this again."""
    if Catalog(ctx.store).pointer() >= version:
        return
    if ctx.settings.rl.export_merged:
        export_merged(ctx, version)
    ctx.store.put_bytes(f"{BALANCED}/latest", f"v{version}\n".encode())


def export_merged(ctx: StageContext, version: int | None = None) -> str:
    """Write the lab's interchange file, rl_data_balanced_merged.json, for a version (default: latest), byte for
    byte what the single-file code wrote: {"queries": {"<question_id>": group, ...}, "version": "v<n>"}, keys
    sorted as strings. Streamed: each group goes to a local spool as it is read, then out in key order, so memory
    holds one key per group. The newest version's goes to rl_data_balanced_merged.json, an older one's to
    rl_data_balanced_merged.v<n>.json: a file name never holds another version's content. -> its URI"""
    newest = latest_version(ctx.store)
    if not newest:
        raise NotFoundError(f"{ctx.store.uri} holds no balanced version: nothing to export (is the store URI right?)")
    version = newest if version is None else version
    if not 1 <= version <= newest:
        raise NotFoundError(f"balanced version v{version} does not exist in {ctx.store.uri} (it has v1 to v{newest})")
    target = MERGED_EXPORT if version == newest else MERGED_EXPORT.removesuffix(".json") + f".v{version}.json"
    version, groups = stream_balanced(ctx.store, version)
    index: list[tuple[str, int, int]] = []  # (key, offset, length) in the spool
    with (
        tempfile.TemporaryFile(prefix="leverplus-export-") as spool,
        tempfile.NamedTemporaryFile(prefix="leverplus-export-", suffix=".json") as out,
    ):
        for group in groups:
            value = json.dumps(group.model_dump(mode="json"), sort_keys=True).encode()
            index.append((str(group.question_id), spool.tell(), len(value)))
            spool.write(value)
        index.sort()
        out.write(b'{"queries": {')
        for i, (key, offset, length) in enumerate(index):
            spool.seek(offset)
            out.write((", " if i else "").encode() + json.dumps(key).encode() + b": " + spool.read(length))
        out.write(b'}, "version": ' + json.dumps(f"v{version}").encode() + b"}")
        out.flush()
        ctx.store.put_file(target, Path(out.name))
    ctx.log.info("interchange file written", uri=ctx.store.uri_for(target), version=f"v{version}")
    return ctx.store.uri_for(target)
