"""The typed catalog of a store and `leverplus status` (issue 13): a missing stats field fails naming the object
instead of reading as zero, and a person sees rounds, versions, runs and anything unfinished at a glance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leverplus.catalog import Catalog
from leverplus.cli import main
from leverplus.errors import IntegrityError
from leverplus.run_record import RunRecord, write_record
from leverplus.stages.filter import run_filter
from leverplus.stages.growth import run_growth_check
from leverplus.stages.layout import plan_key
from leverplus.stages.plan import run_plan
from tests.test_stages import _scored_round


def test_status_shows_rounds_versions_runs_and_what_is_unfinished(world, capsys: pytest.CaptureFixture[str]) -> None:
    _scored_round(world, "round-1")
    stats = run_filter(world("filter"), "round-1")
    run_plan(world("plan"), "rl", plan_key("round-2"), "round-2")  # planned, not scored yet
    store = world("status").store
    write_record(store, RunRecord(run_id="run-0001", round_id="round-2", pipeline="data-growth", sft_checkpoint="x",
                                  settings_hash="h"))  # fmt: skip

    capsys.readouterr()  # what the stages logged
    assert main(["status", "--store", str(world.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rounds"]["round-1"] == {
        "filtered": True,
        "scored": stats["scored_queries"],
        "accepted": stats["accepted_queries"],
        "added": stats["added_queries"],
        "version": "v1",
    }
    assert data["rounds"]["round-2"] == {"filtered": False}
    assert data["latest"] == "v1" and data["balanced_versions"]["v1"]["queries"] == stats["added_queries"]
    assert data["unfinished_runs"] == ["run-0001"] and data["lease"] == ""

    assert main(["status", "--store", str(world.root)]) == 0
    text = capsys.readouterr().out
    assert "v1 (latest)" in text and "not filtered" in text
    assert "unfinished: run-0001 (`leverplus run data-growth` continues it)" in text


def test_status_of_a_mistyped_store_or_a_file_is_one_line_not_empty_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    for wrong in (tmp_path / "leverplus-stroe", tmp_path / "a-file"):
        capsys.readouterr()
        assert main(["status", "--store", str(wrong)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and "is the store URI right?" in captured.err


def test_latest_is_the_newest_version_and_a_stale_or_deleted_pointer_changes_nothing(
    world, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22, items 1 and 3: creating a version's manifest publishes it; `latest` is checked, never trusted."""
    for round_id in ("round-1", "round-2"):
        _scored_round(world, round_id)
        run_filter(world("filter"), round_id)
    root = world.root
    (root / "rl-data/balanced/latest").write_text("v1\n")  # a filter killed between v2's manifest and the pointer
    capsys.readouterr()
    assert main(["status", "--store", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latest"] == "v2" and data["pointer_lags"] and set(data["balanced_versions"]) == {"v1", "v2"}
    assert main(["status", "--store", str(root)]) == 0
    text = capsys.readouterr().out
    assert "v2 (latest)" in text and "pointer lags v2" in text
    (root / "rl-data/balanced/latest").unlink()
    assert Catalog(world("read").store).published() == 2
    (root / "rl-data/balanced/latest").write_text("v3\n")  # names a version whose manifest is gone
    with pytest.raises(IntegrityError, match=r"latest names v3, but .*v3\.manifest\.json is missing"):
        Catalog(world("read").store).published()
    (root / "rl-data/balanced/latest").write_text("v2\n")
    (root / "rl-data/balanced/v1.manifest.json").unlink()
    with pytest.raises(IntegrityError, match=r"v1\.manifest\.json is missing while v2 exists"):
        Catalog(world("read").store).published()


def test_a_missing_stats_field_fails_naming_the_object_instead_of_reading_as_zero(world) -> None:
    _scored_round(world, "round-1")
    run_filter(world("filter"), "round-1")
    manifest = world.root / "rl-data/balanced/v1.manifest.json"
    doc = json.loads(manifest.read_text())
    del doc["stats"]["queries"]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match=r"v1\.manifest\.json: stats unreadable \(queries: Field required\)"):
        Catalog(world("x").store).version(1)
    run_manifest = world.root / "rounds/round-1/manifest.json"
    doc = json.loads(run_manifest.read_text())
    del doc["stats"]["accepted_queries"]
    run_manifest.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match=r"round-1/manifest\.json: stats unreadable \(accepted_queries"):
        run_plan(world("plan"), "rl", plan_key("round-2"), "round-2")  # used to size the plan from 0 accepted
    world("x").store.put_bytes("runs/r/checkpoints/grpo/config.json", b'{"data_version": "v1"}')
    with pytest.raises(IntegrityError, match=r"v1\.manifest\.json: stats unreadable"):
        run_growth_check(world("growth"), "run-g")


def test_later_rounds_exclude_earlier_ones_from_the_index_or_the_plan(world) -> None:
    from leverplus.errors import ConflictError

    small = {"rl.target_new_queries": 10, "rl.prior_acceptance_rate": 0.5}
    plan = run_plan(world("plan", **small), "rl", plan_key("round-a"), "round-a")
    ids = sorted(q.question_id for shard in plan.shards for q in shard)
    index = world.root / "rounds/round-a/queries.json"
    by_shard = [[q.question_id for q in shard] for shard in plan.shards]
    assert json.loads(index.read_text()) == by_shard  # what later rounds and `filter` read instead of the pools
    catalog = Catalog(world("x").store)
    assert catalog.planned_ids() == set(ids) and catalog.planned_ids(exclude="round-a") == set()
    assert catalog.planned_by_shard("round-a") == by_shard
    # Issue 22 item 2: an index the plan's index does not vouch for is read from the plan instead.
    for damaged in (json.dumps(ids), json.dumps(by_shard[1:]), index.read_text()[:-7], ""):
        index.write_text(damaged)  # flat (from before shards), a shard's list removed, truncated, emptied
        assert catalog.planned_ids() == set(ids) and catalog.planned_by_shard("round-a") == by_shard
    index.unlink()  # a store from before the index, or a plan killed before writing it
    assert catalog.planned_ids() == set(ids) and catalog.planned_by_shard("round-a") == by_shard
    assert catalog.planned_by_shard("round-never-planned") == []
    plan_b = run_plan(world("plan", **small), "rl", plan_key("round-b"), "round-b")
    assert not {q.question_id for shard in plan_b.shards for q in shard} & set(ids)
    # A plan is reused only under the settings it was made with.
    with pytest.raises(ConflictError, match=r"round-a/plan\.json was made with settings [0-9a-f]{12}"):
        run_plan(world("plan", **small, **{"pool.size": 8}), "rl", plan_key("round-a"), "round-a")


def test_shards_are_sized_by_minutes_at_the_pace_the_newest_round_measured(world) -> None:
    _scored_round(world, "round-1")  # its shard manifests record how long scoring took
    manifests = sorted((world.root / "rounds/round-1/shards").glob("*.manifest.json"))
    rows = 0
    for path in manifests:  # pin the measured pace: 2 s per query
        doc = json.loads(path.read_text())
        assert doc["stats"]["seconds"] > 0
        doc["stats"]["seconds"] = 2.0 * doc["stats"]["rows"]
        rows += doc["stats"]["rows"]
        path.write_text(json.dumps(doc))
    assert Catalog(world("x").store).seconds_per_query() == 2.0
    sized = {"rl.target_new_queries": 40, "rl.prior_acceptance_rate": 0.5, "rl.shard_minutes": 0.5}
    plan = run_plan(world("plan", **sized), "rl", plan_key("round-2"), "round-2")
    assert {len(s) for s in plan.shards[:-1]} == {15}  # 30 s / 2 s per query
    unsized = {**sized, "rl.shard_minutes": None}  # unset: rl.shard_size (60 in these tests)
    plan3 = run_plan(world("plan", **unsized), "rl", plan_key("round-3"), "round-3")
    assert len(plan3.shards[0]) == min(60, sum(len(s) for s in plan3.shards))
