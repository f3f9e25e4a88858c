"""Never publish half of something, never let two rounds publish at once, and notice corruption."""

from __future__ import annotations

import json

import pytest

from leverplus.cli import main
from leverplus.errors import ConflictError, IntegrityError
from leverplus.stages.balanced import load_balanced
from leverplus.stages.filter import run_filter
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
    assert not ctx.store.exists(f"{BALANCED}/latest") and not ctx.store.list(f"{BALANCED}/segments/")
    ctx.store.delete(LEASE)
    assert run_filter(world("filter"), "round-r")["version"] == "v1"
    assert not ctx.store.exists(LEASE)


def test_verify_finds_truncated_versions_and_altered_shards(world, capsys: pytest.CaptureFixture[str]) -> None:
    _scored_round(world)
    run_filter(world("filter"), "round-r")
    checked, problems, _ = run_verify(world("verify"))
    assert problems == [] and checked >= 5  # a version, latest, the shard(s), two feature files

    version_path = world.root / BALANCED / "segments/round-r.jsonl"
    version_path.write_bytes(version_path.read_bytes()[:-50])
    with pytest.raises(IntegrityError, match=r"segments/round-r\.jsonl: sha256 differs from its manifest"):
        load_balanced(world("read").store)
    shard = world.root / "rounds/round-r/shards/00000.jsonl"
    lines = shard.read_text().splitlines()
    shard.write_text("\n".join(lines[1:]) + "\n")  # a whole group silently dropped: still parses
    _, problems, _ = run_verify(world("verify"))
    assert any("segments/round-r.jsonl: sha256 differs" in p for p in problems)
    assert any("rounds/round-r/shards/00000.jsonl: sha256 differs from its manifest" in p for p in problems)

    assert main(["verify", "--store", str(world.root)]) == 2
    out = capsys.readouterr()
    assert "2 problem(s)" in out.out and out.err.strip().splitlines()[-1].startswith("leverplus: error: 2 problem(s)")


def test_resume_redoes_shards_that_do_not_match_their_manifest(world) -> None:
    from structlog.testing import capture_logs

    _scored_round(world)
    shard = world.root / "rounds/round-r/shards/00000.jsonl"
    manifest = world.root / "rounds/round-r/shards/00000.manifest.json"
    good = shard.read_bytes()
    assert json.loads(manifest.read_text())["stats"]["rows"] == len(good.splitlines())

    def rerun() -> list[dict]:
        with capture_logs() as logs:
            run_score(world("score"), "round-r", 0, policy_uri=None)
        return [e for e in logs if e["event"] in ("redoing shard", "shard exists and matches its manifest, skipping")]

    assert [e["event"] for e in rerun()] == ["shard exists and matches its manifest, skipping"]
    manifest.unlink()  # the writer died between the shard and its manifest
    assert "no manifest" in rerun()[0]["reason"] and shard.read_bytes() == good and manifest.exists()
    shard.write_bytes(good[: len(good) // 2])  # truncated behind the pipeline's back
    assert "sha256 differs" in rerun()[0]["reason"] and shard.read_bytes() == good

    # Readers refuse what they cannot verify, naming the object.
    shard.write_bytes(good.replace(b'"correct":true', b'"correct":false', 1))
    with pytest.raises(IntegrityError, match=r"shards/00000\.jsonl: sha256 differs from its manifest"):
        run_filter(world("filter"), "round-r")
    assert not (world.root / BALANCED / "latest").exists()  # nothing published from tampered data


def test_a_shard_made_with_another_prompt_is_a_conflict_not_a_silent_mix(world) -> None:
    _scored_round(world)
    manifest = world.root / "rounds/round-r/shards/00000.manifest.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(doc | {"prompt_hash": "0123456789abcdef"}))
    with pytest.raises(ConflictError, match="made with prompt 0123456789abcdef"):
        run_score(world("score"), "round-r", 0, policy_uri=None)
    run_score(world("score"), "round-r", 0, policy_uri=None, force=True)  # --force redoes it
    assert json.loads(manifest.read_text())["prompt_hash"] == doc["prompt_hash"]


def test_a_shard_made_with_other_settings_is_never_reused(world) -> None:
    """Issue 12 D5: `score --set rl.candidates_per_query=10` used to skip a shard scored with 20."""
    _scored_round(world)
    shard = world.root / "rounds/round-r/shards/00000.jsonl"
    before = shard.read_bytes()
    with pytest.raises(ConflictError, match=r"shards/00000\.jsonl was made with settings [0-9a-f]{12}, this comm"):
        run_score(world("score", **{"rl.candidates_per_query": 10}), "round-r", 0, policy_uri=None)
    assert shard.read_bytes() == before
    run_score(world("score"), "round-r", 0, policy_uri=None)  # the same settings reuse it


def test_filter_dying_before_latest_moves_has_published_and_the_rerun_moves_the_pointer(world, monkeypatch) -> None:
    from leverplus.store.local import LocalStore

    _scored_round(world)
    put = LocalStore.put_bytes

    def dies_at_latest(self, key: str, data: bytes):
        if key == f"{BALANCED}/latest":
            raise KeyboardInterrupt  # the pod is evicted right before `latest` moves
        return put(self, key, data)

    monkeypatch.setattr(LocalStore, "put_bytes", dies_at_latest)
    with pytest.raises(KeyboardInterrupt):
        run_filter(world("filter"), "round-r")
    monkeypatch.setattr(LocalStore, "put_bytes", put)
    segment = world.root / BALANCED / "segments/round-r.jsonl"
    manifest = world.root / BALANCED / "v1.manifest.json"
    assert not (world.root / BALANCED / "latest").exists()
    written = load_balanced(world("read").store)  # the manifest's exclusive create was the publish
    assert written[0] == 1 and written[1]
    orphan, published = segment.read_bytes(), manifest.read_bytes()

    stats = run_filter(world("filter"), "round-r")  # the retried pod
    assert stats["version"] == "v1" and stats["added_queries"] == len(written[1])
    assert load_balanced(world("read").store) == written
    assert (world.root / BALANCED / "latest").read_text() == "v1\n"
    assert segment.read_bytes() == orphan and manifest.read_bytes() == published
    assert not (world.root / BALANCED / "v2.manifest.json").exists()
    assert not (world.root / LEASE).exists()  # the lease was released even when the filter died
