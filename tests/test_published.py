"""Issue 22, items 1, 3 and 12: a published version never changes. Creating a version's manifest (exclusively) is
the publish; the next number comes from what exists; `latest` is checked, never trusted; export never writes a
version that does not exist, nor another version's content under a name."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from leverplus.catalog import Catalog
from leverplus.cli import main
from leverplus.config import load_settings
from leverplus.errors import IntegrityError
from leverplus.records import CandidateGroup
from leverplus.stages.balanced import Accepted, load_balanced, write_version
from leverplus.stages.context import StageContext
from leverplus.stages.filter import is_balanced, run_filter
from leverplus.stages.layout import BALANCED, MERGED_EXPORT, round_prefix, shard_key
from leverplus.stages.verify import run_verify
from leverplus.store.local import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # a writer of fake scored rounds
from scored_rounds import write_scored_round

ROUNDS = {"round-1": range(100, 160), "round-2": range(200, 260), "round-3": range(300, 360)}


def _ctx(root: Path, **overrides: object) -> StageContext:
    settings = {"store.uri": str(root), "data.name": "synthetic", **overrides}
    return StageContext(load_settings(overrides=settings), "filter")


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / BALANCED).glob("v*.json"))}


def _accepted_lines(ctx: StageContext, round_id: str) -> list[Accepted]:
    """The round's balanced groups as `filter` hands them to write_version."""
    lines = b"".join(ctx.store.get_bytes(shard_key(round_prefix(round_id), i)) for i in range(3)).splitlines()
    groups = [(CandidateGroup.model_validate_json(line), line) for line in lines]
    accepted = [
        Accepted(g.question_id, line, sum(c.correct for c in g.candidates), len(g.candidates))
        for g, line in groups
        if is_balanced(g, 0.4, 0.6)
    ]
    return sorted(accepted, key=lambda a: a.question_id)


def _grow(root: Path, rounds: list[str]) -> None:
    for round_id in rounds:
        write_scored_round(_ctx(root), round_id, list(ROUNDS[round_id]), shard_size=25, balanced=True)
        run_filter(_ctx(root), round_id)


@pytest.mark.parametrize("damage", ["deleted", "stale"])
def test_a_deleted_or_stale_latest_never_rewrites_a_published_version(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "store"
    _grow(root, ["round-1", "round-2"])
    before = _digests(root)
    latest = root / BALANCED / "latest"
    latest.unlink() if damage == "deleted" else latest.write_text("v1\n")
    _grow(root, ["round-3"])
    assert _digests(root) | before == _digests(root)  # v1 and v2 byte for byte, v3 added
    version, groups = load_balanced(_ctx(root).store)
    ids = {g.question_id for g in groups}
    assert version == 3 and latest.read_text() == "v3\n"
    assert all(any(q in ids for q in ROUNDS[r]) for r in ROUNDS)  # no round's queries left the set


def test_a_deleted_manifest_stops_the_next_round_instead_of_reusing_its_number(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _grow(root, ["round-1", "round-2"])
    (root / BALANCED / "v2.manifest.json").unlink()
    write_scored_round(_ctx(root), "round-3", list(ROUNDS["round-3"]), shard_size=25, balanced=True)
    with pytest.raises(IntegrityError, match=r"latest names v2, but .*v2\.manifest\.json is missing"):
        run_filter(_ctx(root), "round-3")
    assert not (root / BALANCED / "v3.manifest.json").exists() and not (root / BALANCED / "v2.manifest.json").exists()


def test_a_version_number_taken_meanwhile_is_an_error_naming_both_hashes(tmp_path: Path, monkeypatch) -> None:
    """Two writers that both read v1 as the newest: the second never replaces the first one's v2."""
    root = tmp_path / "store"
    _grow(root, ["round-1", "round-2"])
    v2 = (root / BALANCED / "v2.manifest.json").read_bytes()
    monkeypatch.setattr(Catalog, "published", lambda self: 1)  # the race: it read the store before v2 appeared
    write_scored_round(_ctx(root), "round-3", list(ROUNDS["round-3"]), shard_size=25, balanced=True)
    with pytest.raises(IntegrityError, match=r"v2\.manifest\.json exists \(sha256 [0-9a-f]{12}\); refusing to "
                                             r"replace it with other content \(sha256 [0-9a-f]{12}\)"):  # fmt: skip
        write_version(_ctx(root), "round-3", _accepted_lines(_ctx(root), "round-3"))
    assert (root / BALANCED / "v2.manifest.json").read_bytes() == v2


def test_a_filter_killed_after_the_manifest_published_it_and_nothing_reuses_its_number(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    _grow(root, ["round-1"])
    write_scored_round(_ctx(root), "round-2", list(ROUNDS["round-2"]), shard_size=25, balanced=True)
    put = LocalStore.put_bytes

    def dies_at_latest(self: LocalStore, key: str, data: bytes):
        if key == f"{BALANCED}/latest":
            raise KeyboardInterrupt  # the pod is evicted right before `latest` moves
        return put(self, key, data)

    monkeypatch.setattr(LocalStore, "put_bytes", dies_at_latest)
    with pytest.raises(KeyboardInterrupt):
        run_filter(_ctx(root), "round-2")
    monkeypatch.setattr(LocalStore, "put_bytes", put)
    assert (root / BALANCED / "latest").read_text() == "v1\n"
    v2 = (root / BALANCED / "v2.manifest.json").read_bytes()
    # v2 is published: status, export and training all see it, and the next round writes v3, not another v2.
    assert main(["status", "--store", str(root), "--json"]) == 0
    assert '"latest": "v2"' in capsys.readouterr().out
    assert main(["export", "--store", str(root), "--data-version", "2"]) == 0
    _grow(root, ["round-3"])
    assert (root / BALANCED / "v2.manifest.json").read_bytes() == v2 and load_balanced(_ctx(root).store)[0] == 3
    assert run_filter(_ctx(root), "round-2")["version"] == "v2"  # the retried pod reports what the first run did
    assert (root / BALANCED / "latest").read_text() == "v3\n"  # and never moves the pointer back


def test_export_refuses_what_does_not_exist_and_never_puts_another_version_under_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    _grow(root, ["round-1", "round-2"])
    assert main(["export", "--store", str(root)]) == 0
    merged = (root / MERGED_EXPORT).read_bytes()
    capsys.readouterr()
    for version in ("0", "3", "-1"):
        assert main(["export", "--store", str(root), "--data-version", version]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"balanced version v{version} does not exist" in err
    assert (root / MERGED_EXPORT).read_bytes() == merged  # the interchange file of v2 is untouched
    assert main(["export", "--store", str(root), "--data-version", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("rl_data_balanced_merged.v1.json")
    assert (root / MERGED_EXPORT).read_bytes() == merged
    assert main(["export", "--store", str(root)]) == 0 and (root / MERGED_EXPORT).read_bytes() == merged
    mistyped = tmp_path / "stroe"
    assert main(["export", "--store", str(mistyped)]) == 2
    assert "holds no balanced version" in capsys.readouterr().err and not mistyped.exists()


@pytest.mark.parametrize("damage", ["a shard's list removed", "truncated"])
def test_an_edited_queries_index_never_makes_filter_publish_part_of_a_round(tmp_path: Path, damage: str) -> None:
    """Issue 22 item 2: `filter` and `plan` read a queries.json the plan's index does not vouch for from the plan."""
    stores = {name: tmp_path / name for name in ("clean", "damaged")}
    for root in stores.values():
        _grow(root, ["round-1"])
        write_scored_round(_ctx(root), "round-2", list(ROUNDS["round-2"]), shard_size=25, balanced=True)
    index = stores["damaged"] / "rounds/round-2/queries.json"
    text = index.read_text()
    index.write_text(json.dumps(json.loads(text)[1:]) if damage.startswith("a shard") else text[: len(text) // 2])
    for root in stores.values():
        assert run_filter(_ctx(root), "round-2")["added_queries"] == 60
    assert _digests(stores["clean"]).keys() == _digests(stores["damaged"]).keys()
    for name in ("segments/round-2.jsonl", "segments/round-2.ids.json"):
        assert (stores["clean"] / BALANCED / name).read_bytes() == (stores["damaged"] / BALANCED / name).read_bytes()
    assert "queries.json" in " ".join(run_verify(_ctx(stores["damaged"]))[1])


def test_edited_version_stats_are_found_by_verify_and_never_carried_into_the_next_version(tmp_path: Path) -> None:
    """Issue 22 item 5."""
    root = tmp_path / "store"
    _grow(root, ["round-1"])
    manifest = root / BALANCED / "v1.manifest.json"
    doc = json.loads(manifest.read_text())
    stats = doc["stats"]
    edited = {"positives": 3, "candidates": stats["candidates"] * 10}  # what the attack wrote
    manifest.write_text(json.dumps(doc | {"stats": stats | edited}))
    assert any("v1.manifest.json: stats unreadable (positives 3 of" in p for p in run_verify(_ctx(root))[1])
    write_scored_round(_ctx(root), "round-2", list(ROUNDS["round-2"]), shard_size=25, balanced=True)
    with pytest.raises(IntegrityError, match=r"v1\.manifest\.json: stats unreadable \(positives 3 of"):
        run_filter(_ctx(root), "round-2")
    assert not (root / BALANCED / "v2.manifest.json").exists()
    consistent = edited | {"positive_ratio": round(3 / edited["candidates"], 4)}  # a careful edit
    manifest.write_text(json.dumps(doc | {"stats": stats | consistent}))
    problems = run_verify(_ctx(root))[1]
    assert any(f"balanced v1: its manifest says candidates {edited['candidates']}, its segments hold "
               f"{stats['candidates']}" in p for p in problems)  # fmt: skip
