"""Issue 13: a balanced version is a manifest of immutable segments, and reads back exactly what the single-file
format held. The reference below restates the single-file code (leverplus/stages/filter.py before segments,
commit ac8c268): each version rewrote the whole set, sorted by question_id, plus the merged export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from leverplus.config import load_settings
from leverplus.errors import IntegrityError
from leverplus.records import CandidateGroup, canonical_json
from leverplus.stages.balanced import export_merged, load_balanced, segments, stream_balanced
from leverplus.stages.context import StageContext
from leverplus.stages.filter import is_balanced, run_filter
from leverplus.stages.layout import BALANCED, MERGED_EXPORT, round_prefix, shard_key
from leverplus.stages.verify import run_verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # a writer of fake scored rounds
from scored_rounds import write_scored_round

# Three nightly rounds; round-2 re-scores 20 of round-1's queries (a set is keyed by question_id: they must not
# be added twice) and round-3 re-scores some of round-2's.
ROUNDS = {"round-1": range(100, 160), "round-2": range(140, 220), "round-3": range(200, 300)}


def _ctx(uri: str) -> StageContext:
    return StageContext(load_settings(overrides={"store.uri": uri, "data.name": "synthetic"}), "filter")


def _accepted(ctx: StageContext, round_id: str, shards: int) -> list[CandidateGroup]:
    lines = b"".join(ctx.store.get_bytes(shard_key(round_prefix(round_id), i)) for i in range(shards))
    groups = [CandidateGroup.model_validate_json(line) for line in lines.splitlines()]
    return [g for g in groups if is_balanced(g, 0.4, 0.6)]


def _single_file_versions(ctx: StageContext) -> list[tuple[bytes, bytes]]:
    """What the single-file code published for ROUNDS: (v<n>.jsonl, rl_data_balanced_merged.json) per version."""
    current: list[CandidateGroup] = []
    published = []
    for round_id, ids in ROUNDS.items():
        present = {g.question_id for g in current}
        added = [g for g in _accepted(ctx, round_id, -(-len(ids) // 25)) if g.question_id not in present]
        current = sorted(current + added, key=lambda g: g.question_id)
        version = len(published) + 1
        export = {"version": f"v{version}", "queries": {str(g.question_id): g.model_dump(mode="json") for g in current}}
        published.append(
            (b"".join(canonical_json(g) + b"\n" for g in current), json.dumps(export, sort_keys=True).encode())
        )
    return published


def test_three_rounds_publish_segments_that_read_back_as_the_single_file_format(store_uri: str) -> None:
    ctx = _ctx(store_uri)
    for round_id, ids in ROUNDS.items():
        write_scored_round(ctx, round_id, list(ids), shard_size=25)
    expected = _single_file_versions(ctx)

    for number, round_id in enumerate(ROUNDS, start=1):
        stats = run_filter(_ctx(store_uri), round_id)
        assert stats["version"] == f"v{number}"
        # A version costs what it adds: its round's new groups, once, and nothing else is rewritten.
        segment = ctx.store.get_bytes(f"{BALANCED}/segments/{round_id}.jsonl")
        assert len(segment.splitlines()) == stats["added_queries"] > 0
        assert [s.key.rsplit("/", 1)[1] for s in segments(ctx.store, number)] == [
            f"{r}.jsonl" for r in list(ROUNDS)[:number]
        ]
    assert not ctx.store.exists(MERGED_EXPORT)  # not rewritten every night

    for number, (jsonl, export) in enumerate(expected, start=1):
        version, groups = load_balanced(ctx.store, number)
        assert version == number
        assert b"".join(canonical_json(g) + b"\n" for g in groups) == jsonl
        uri = export_merged(ctx, number)  # an older version's interchange file is named for its version
        assert ctx.store.get_bytes(uri.removeprefix(ctx.store.uri + "/")) == export
        assert uri.endswith(MERGED_EXPORT if number == len(expected) else f"merged.v{number}.json")
    version_stats = json.loads(ctx.store.get_bytes(f"{BALANCED}/v3.manifest.json"))["stats"]
    everything = [CandidateGroup.model_validate_json(line) for line in expected[-1][0].splitlines()]
    assert version_stats["queries"] == len(everything)
    assert version_stats["positives"] == sum(c.correct for g in everything for c in g.candidates)
    assert run_verify(_ctx(store_uri))[1] == []


def test_a_single_file_store_grows_into_segments_and_still_reads(tmp_path) -> None:
    """A store written by the single-file code keeps its versions; the next round lists the old file as its first
    segment, and every version reads as before."""
    ctx = _ctx(str(tmp_path / "store"))
    for round_id, ids in ROUNDS.items():
        write_scored_round(ctx, round_id, list(ids), shard_size=25)
    expected = _single_file_versions(ctx)
    run_filter(_ctx(str(tmp_path / "store")), "round-1")
    # Rewrite v1 as the single-file code did: one file, a manifest whose stats have no segments or positives.
    manifest = json.loads(ctx.store.get_bytes(f"{BALANCED}/v1.manifest.json"))
    ctx.store.put_bytes(f"{BALANCED}/v1.jsonl", expected[0][0])
    for key in ctx.store.list(f"{BALANCED}/segments/"):
        ctx.store.delete(key)
    manifest["outputs"] = {"v1.jsonl": ctx.store.sha256(f"{BALANCED}/v1.jsonl")}
    manifest["stats"] = {k: v for k, v in manifest["stats"].items() if k not in ("segments", "positives")}
    ctx.store.put_bytes(f"{BALANCED}/v1.manifest.json", canonical_json(manifest))

    ctx.store.delete("rounds/round-2/queries.json")  # rounds planned before the index: filter reads the plan
    index = json.loads(ctx.store.get_bytes("rounds/round-2/plan/index.json"))
    ctx.store.put_bytes("rounds/round-2/plan/index.json", canonical_json(index | {"queries_sha256": None}))
    for round_id in ("round-2", "round-3"):
        run_filter(_ctx(str(tmp_path / "store")), round_id)
    assert [s.key.rsplit("/", 1)[1] for s in segments(ctx.store, 3)] == ["v1.jsonl", "round-2.jsonl", "round-3.jsonl"]
    for number, (jsonl, export) in enumerate(expected, start=1):
        assert b"".join(canonical_json(g) + b"\n" for g in load_balanced(ctx.store, number)[1]) == jsonl
        uri = export_merged(ctx, number)  # an older version's interchange file is named for its version
        assert ctx.store.get_bytes(uri.removeprefix(ctx.store.uri + "/")) == export
        assert uri.endswith(MERGED_EXPORT if number == len(expected) else f"merged.v{number}.json")
    assert run_verify(_ctx(str(tmp_path / "store")))[1] == []


def test_every_segment_is_verified_as_it_is_read(tmp_path) -> None:
    ctx = _ctx(str(tmp_path / "store"))
    for round_id, ids in ROUNDS.items():
        write_scored_round(ctx, round_id, list(ids), shard_size=25)
        run_filter(_ctx(str(tmp_path / "store")), round_id)
    middle = tmp_path / "store" / BALANCED / "segments/round-2.jsonl"
    lines = middle.read_bytes().splitlines(keepends=True)
    middle.write_bytes(b"".join(lines[1:]))  # a whole group dropped: every line still parses
    with pytest.raises(IntegrityError, match=r"segments/round-2\.jsonl: sha256 differs from its manifest"):
        list(stream_balanced(ctx.store, 3)[1])
    assert len(load_balanced(ctx.store, 1)[1]) > 0  # a version without that segment is untouched
    problems = run_verify(_ctx(str(tmp_path / "store")))[1]
    assert (
        len([p for p in problems if "segments/round-2.jsonl: sha256 differs" in p]) == 1
    )  # read once, not per version
    ids = tmp_path / "store" / BALANCED / "segments/round-3.ids.json"
    ids.write_text(json.dumps(json.loads(ids.read_text())[1:]))
    write_scored_round(ctx, "round-4", [400, 401], shard_size=25)
    with pytest.raises(IntegrityError, match=r"round-3\.ids\.json: sha256 differs"):
        run_filter(_ctx(str(tmp_path / "store")), "round-4")


def test_export_command_writes_the_interchange_file_of_a_version(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from leverplus.cli import main

    ctx = _ctx(str(tmp_path / "store"))
    for round_id, ids in list(ROUNDS.items())[:2]:
        write_scored_round(ctx, round_id, list(ids), shard_size=25)
        run_filter(_ctx(str(tmp_path / "store")), round_id)
    assert main(["export", "--store", str(tmp_path / "store"), "--data-version", "1"]) == 0
    v1_export = MERGED_EXPORT.removesuffix(".json") + ".v1.json"
    assert capsys.readouterr().out.strip().splitlines()[-1] == ctx.store.uri_for(v1_export)
    export = json.loads(ctx.store.get_bytes(v1_export))
    assert export["version"] == "v1" and sorted(map(int, export["queries"])) == [
        g.question_id for g in load_balanced(ctx.store, 1)[1]
    ]
    assert main(["export", "--store", str(tmp_path / "store"), "--data-version", "7"]) == 2
    assert "v7" in capsys.readouterr().err
