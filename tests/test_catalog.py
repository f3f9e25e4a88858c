"""The typed catalog of a store and `leverplus status` (issue 13): a missing stats field fails naming the object
instead of reading as zero, and a person sees rounds, versions, runs and anything unfinished at a glance."""

from __future__ import annotations

import json

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
