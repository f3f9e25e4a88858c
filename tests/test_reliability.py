"""Never publish half of something, never let two rounds publish at once, and notice corruption."""

from __future__ import annotations

import json

import pytest

from leverplus.cli import main
from leverplus.errors import ConflictError, IntegrityError
from leverplus.stages.filter import load_balanced, run_filter
from leverplus.stages.layout import BALANCED, LEASE, plan_key
from leverplus.stages.plan import run_plan
from leverplus.stages.score import run_score
from leverplus.stages.verify import run_verify
from leverplus.store import Store
from leverplus.store.lease import lease


def _scored_round(world, round_id: str = "round-r") -> None:
    ctx = world("plan", **{"rl.target_new_queries": 15, "rl.prior_acceptance_rate": 0.25})
    plan = run_plan(ctx, "rl", plan_key(round_id), round_id)
    for shard in plan.shard_ids():
        run_score(world("score"), round_id, shard, policy_uri=None)


def test_lease_is_exclusive_on_both_backends(store: Store) -> None:
    with lease(store, "rl-data/balanced/.lease", owner="round a"):
        second = lease(store, "rl-data/balanced/.lease", owner="round b")
        with pytest.raises(ConflictError, match=r"\.lease is held by round a on .* since .*another round"):
            second.__enter__()
        assert json.loads(store.get_bytes("rl-data/balanced/.lease"))["owner"] == "round a"
    assert not store.exists("rl-data/balanced/.lease")  # released
    with lease(store, "rl-data/balanced/.lease", owner="round b"):
        pass


def test_filter_does_not_publish_while_another_round_holds_the_lease(world) -> None:
    _scored_round(world)
    ctx = world("filter")
    assert ctx.store.put_if_absent(LEASE, b'{"owner": "round other", "host": "node-7", "pid": 1, "since": "t"}')
    with pytest.raises(ConflictError, match="held by round other on node-7"):
        run_filter(ctx, "round-r")
    assert not ctx.store.exists(f"{BALANCED}/latest") and not ctx.store.exists(f"{BALANCED}/v1.jsonl")
    ctx.store.delete(LEASE)
    assert run_filter(world("filter"), "round-r")["version"] == "v1"
    assert not ctx.store.exists(LEASE)


def test_verify_finds_truncated_versions_and_altered_shards(world, capsys: pytest.CaptureFixture[str]) -> None:
    _scored_round(world)
    run_filter(world("filter"), "round-r")
    checked, problems = run_verify(world("verify"))
    assert problems == [] and checked >= 5  # a version, latest, the shard(s), two feature files

    version_path = world.root / BALANCED / "v1.jsonl"
    version_path.write_bytes(version_path.read_bytes()[:-50])
    with pytest.raises(IntegrityError, match=r"v1\.jsonl: sha256 differs from its manifest"):
        load_balanced(world("read"))
    shard = world.root / "rounds/round-r/shards/00000.jsonl"
    lines = shard.read_text().splitlines()
    shard.write_text("\n".join(lines[1:]) + "\n")  # a whole group silently dropped: still parses
    _, problems = run_verify(world("verify"))
    assert any("v1.jsonl: sha256 differs" in p for p in problems)
    assert any("rounds/round-r/shards/00000.jsonl: sha256 differs" in p for p in problems)

    assert main(["verify", "--store", str(world.root)]) == 2
    out = capsys.readouterr()
    assert "2 problem(s)" in out.out and out.err.strip().splitlines()[-1].startswith("leverplus: error: 2 problem(s)")
