"""Stages called as functions on a tiny world: plan, score, filter, growth-check, eval guards."""

from __future__ import annotations

import json
import math

import pytest

from leverplus.errors import ConfigError, DataError
from leverplus.records import Candidate, CandidateGroup
from leverplus.stages.balanced import export_merged, load_balanced
from leverplus.stages.filter import is_balanced, run_filter
from leverplus.stages.growth import run_growth_check
from leverplus.stages.layout import BALANCED, MERGED_EXPORT, plan_key
from leverplus.stages.plan import run_plan
from leverplus.stages.score import run_score


def _group(n_pos: int, n: int = 20) -> CandidateGroup:
    cands = [
        Candidate(
            icd_ids=[i, i + 1], prediction="x", accuracy=1.0 if i < n_pos else 0.0, correct=i < n_pos, source="random"
        )
        for i in range(n)
    ]
    return CandidateGroup(
        question_id=1, pool=list(range(30)), candidates=cands, round_id="r", prompt_hash="p", lvlm="sim"
    )


@pytest.mark.parametrize(
    ("positives", "kept"), [(0, False), (7, False), (8, True), (10, True), (12, True), (13, False), (20, False)]
)
def test_balanced_band_is_inclusive(positives: int, kept: bool) -> None:
    assert is_balanced(_group(positives), 0.40, 0.60) is kept


def test_band_edges_need_a_positive_and_a_negative() -> None:
    assert not is_balanced(_group(0), 0.0, 1.0) and not is_balanced(_group(20), 0.0, 1.0)
    assert is_balanced(_group(1), 0.0, 1.0)


def test_round_plan_score_filter_publishes_versions_exactly_once(world) -> None:
    ctx = world("plan", **{"rl.target_new_queries": 20, "rl.prior_acceptance_rate": 0.25})
    plan = run_plan(ctx, "rl", plan_key("round-a"), "round-a")
    planned = [q.question_id for shard in plan.shards for q in shard]
    assert len(planned) == 80 and len(plan.shards) == 2  # ceil(20 / 0.25) queries in shards of 60
    assert all(len(q.pool) == 16 and q.question_id not in q.pool for s in plan.shards for q in s)
    image_of = {r.question_id: r.image_id for r in ctx.split("train")}
    assert not [q for s in plan.shards for q in s if {image_of[i] for i in q.pool} & {image_of[q.question_id]}]
    assert run_plan(ctx, "rl", plan_key("round-a"), "round-a") == plan  # a retried plan reuses the same shards

    with pytest.raises(DataError, match=r"shards \[0, 1\] have no output yet"):
        run_filter(world("filter"), "round-a")
    for shard in plan.shard_ids():
        run_score(world("score"), "round-a", shard, policy_uri=None)
    groups = [json.loads(line) for line in (world.root / "rounds/round-a/shards/00000.jsonl").read_text().splitlines()]
    assert len(groups) == 60
    for g in groups:
        seqs = [tuple(c["icd_ids"]) for c in g["candidates"]]
        assert len(seqs) == len(set(seqs)) == 20 and all(set(s) <= set(g["pool"]) and len(s) == 2 for s in seqs)
        assert all(c["correct"] == (c["accuracy"] > 0) and 0 < c["answer_prob"] < 1 for c in g["candidates"])

    stats = run_filter(world("filter"), "round-a")
    version, balanced = load_balanced(world("read").store)
    assert version == 1 and stats["added_queries"] == len(balanced) == stats["accepted_queries"] > 0
    assert [g.question_id for g in balanced] == sorted({g.question_id for g in balanced})
    assert all(0.4 <= g.positive_ratio <= 0.6 for g in balanced)
    assert (world.root / BALANCED / "latest").read_text() == "v1\n"
    assert not (world.root / MERGED_EXPORT).exists()  # written on demand (or with rl.export_merged)
    export_merged(world("export"))
    export = json.loads((world.root / MERGED_EXPORT).read_text())
    assert export["version"] == "v1" and len(export["queries"]) == len(balanced)

    # A rerun (a retried or continued run) reports what the round did, and publishes nothing; so does one killed
    # after publishing but before the round manifest (issue 12: every step idempotent against its own outputs).
    manifest = world.root / "rounds/round-a/manifest.json"
    first = manifest.read_bytes()
    assert run_filter(world("filter"), "round-a") == stats
    manifest.unlink()
    assert run_filter(world("filter"), "round-a") == stats and manifest.read_bytes() == first
    assert not (world.root / BALANCED / "v2.manifest.json").exists()

    # The next round never re-plans a query of round-a (accepted or rejected) and sizes itself from the
    # acceptance rate observed in round-a.
    ctx2 = world("plan", **{"rl.target_new_queries": 20})
    plan2 = run_plan(ctx2, "rl", plan_key("round-b"), "round-b")
    planned2 = [q.question_id for shard in plan2.shards for q in shard]
    assert not set(planned2) & set(planned)
    rate = stats["accepted_queries"] / stats["scored_queries"]
    assert len(planned2) == min(math.ceil(20 / max(rate, 0.02)), 900 - 80)


def test_growth_check_and_unsafe_ids(world) -> None:
    assert run_growth_check(world("growth")) == "false"  # no balanced set yet
    with pytest.raises(ConfigError, match=r"invalid round id '\.\./x'"):
        run_plan(world("plan"), "rl", plan_key("../x"), "../x")
    with pytest.raises(ConfigError, match="invalid round id 'a/b'"):
        plan_key("a/b")


def test_eval_with_more_shots_than_pool_items_is_an_error(world) -> None:
    from leverplus.policy import PointerSelector, PolicyConfig, save_policy
    from leverplus.stages.evaluate import run_eval
    from leverplus.stages.plan import eval_plan_key

    ctx = world("eval", **{"pool.size": 3, "eval.shots": [1, 4], "eval.num_questions": 5})
    run_plan(ctx, "eval", eval_plan_key("run-x"), "run-x")
    save_policy(PointerSelector(PolicyConfig(feature_dim=ctx.features("train").dim)), ctx.store, "ck", {})
    with pytest.raises(ConfigError, match="4 shots requested but its pool has only 3 distinct items"):
        run_eval(ctx, "run-x", 0, "ck", "ck")
    assert not ctx.store.list("runs/run-x/eval/shards/")  # nothing half-written


def _scored_round(world, round_id: str, **settings: object) -> None:
    ctx = world("plan", **{"rl.target_new_queries": 6, "rl.prior_acceptance_rate": 0.25, **settings})
    plan = run_plan(ctx, "rl", plan_key(round_id), round_id)
    for shard in plan.shard_ids():
        run_score(world("score", **settings), round_id, shard, policy_uri=None)


def _published(world) -> list[str]:
    return sorted(p.name for p in (world.root / BALANCED).glob("*")) if (world.root / BALANCED).exists() else []


@pytest.mark.parametrize(
    ("scored_with", "field"),
    [
        ({"lvlm.sim_seed": 1}, "lvlm"),
        ({"rl.hard_threshold": 0.3}, "hard_threshold"),
        ({"eval.metric_mode": "lenient"}, "metric_mode"),
        ({"rl.candidates_per_query": 10}, "candidates_per_query"),
        ({"prompt": "another system prompt"}, "prompt_hash"),
    ],
)
def test_groups_scored_under_other_settings_are_never_merged_or_trained_on(
    world, monkeypatch: pytest.MonkeyPatch, scored_with: dict, field: str
) -> None:
    """Round 1 is scored and published under the current settings; round 2 under other ones. Filtering round 2
    fails in one line naming the round and the field and publishes nothing; filtering or training under round 2's
    settings refuses the published round 1 the same way."""
    from leverplus.stages import compat
    from leverplus.stages.train import run_rce

    _scored_round(world, "round-1")
    run_filter(world("filter"), "round-1")
    before = _published(world)
    other = {k: v for k, v in scored_with.items() if k != "prompt"}
    with monkeypatch.context() as patch:
        if "prompt" in scored_with:
            patch.setattr(compat, "PROMPT_HASH", "0" * 16)  # as if the prompt builder had changed
        _scored_round(world, "round-2", **other)
        with pytest.raises(DataError, match=rf"round round-1, question_id \d+ was scored with {field}="):
            run_rce(world("rce", **other), "run-x", "unused")  # under round 2's settings, round 1 is refused
    with pytest.raises(DataError, match=rf"round round-2, question_id \d+ was scored with {field}=") as err:
        run_filter(world("filter"), "round-2")
    assert "\n" not in str(err.value)
    assert _published(world) == before  # nothing published, latest unchanged


def test_a_resumed_growth_run_keeps_its_decision_and_evaluates(world) -> None:
    """Issue 12 D1: a data-growth run killed after GRPO used to find its own GRPO checkpoint on resume, call it an
    earlier retrain, print false and skip evaluation. The run's decision is recorded once, and its own checkpoints
    never count against it; another run does see them."""
    _scored_round(world, "round-1")
    run_filter(world("filter"), "round-1")
    assert run_growth_check(world("growth"), "run-g") == "true"  # nothing trained yet
    ctx = world("grpo")
    ctx.store.put_bytes("runs/run-g/checkpoints/grpo/config.json", b'{"data_version": "v1"}')  # killed after GRPO
    assert run_growth_check(world("growth"), "run-g") == "true"  # the resume: recorded decision
    ctx.store.delete("runs/run-g/growth-check.json")
    assert run_growth_check(world("growth"), "run-g") == "true"  # and its own checkpoint never counts
    assert run_growth_check(world("growth"), "run-h") == "false"  # a later run sees run-g's training on v1


def test_hand_edited_plans_cannot_leak_or_duplicate(world) -> None:
    """Issue 12 D4/D6: a plan holding a question twice, or a pool holding the query itself, is refused by every
    reader; a pool holding another question on the query's image is refused by score (and eval)."""
    from leverplus.errors import DataError, IntegrityError
    from leverplus.stages.layout import plan_index_key, plan_part_key

    ctx = world("plan", **{"rl.target_new_queries": 6, "rl.prior_acceptance_rate": 0.5})
    plan = run_plan(ctx, "rl", plan_key("round-x"), "round-x")
    raw = plan.model_dump(mode="json")
    first = raw["shards"][0][0]
    # A scoring pod reads its shard's part of the plan, checked against the plan's index: any edit is refused.
    part = json.loads(ctx.store.get_bytes(plan_part_key(plan_key("round-x"), 0)))
    part["queries"].append(first)
    ctx.store.put_bytes(plan_part_key(plan_key("round-x"), 0), json.dumps(part).encode())
    with pytest.raises(IntegrityError, match=r"plan/00000\.json: sha256 differs from .*plan/index\.json"):
        run_score(world("score"), "round-x", 0, policy_uri=None)
    ctx.store.delete(plan_index_key(plan_key("round-x")))  # a plan without parts (older stores): read whole
    twice = {**raw, "shards": [raw["shards"][0] + [first]]}
    ctx.store.put_bytes(plan_key("round-x"), json.dumps(twice).encode())
    with pytest.raises(DataError, match=rf"question_id {first['question_id']} is planned twice"):
        run_score(world("score"), "round-x", 0, policy_uri=None)
    own = json.loads(json.dumps(raw))
    own["shards"][0][0]["pool"][0] = first["question_id"]
    ctx.store.put_bytes(plan_key("round-x"), json.dumps(own).encode())
    with pytest.raises(DataError, match="is in its own pool"):
        run_score(world("score"), "round-x", 0, policy_uri=None)
    train = ctx.split("train")
    sibling = next(
        r.question_id
        for r in train
        if r.image_id == train[first["question_id"]].image_id and r.question_id != first["question_id"]
    )
    same_image = json.loads(json.dumps(raw))
    same_image["shards"][0][0]["pool"][0] = sibling
    ctx.store.put_bytes(plan_key("round-x"), json.dumps(same_image).encode())
    with pytest.raises(ConfigError, match=rf"its pool holds \[{sibling}\], on the query's own image"):
        run_score(world("score"), "round-x", 0, policy_uri=None)
    assert not ctx.store.list("rounds/round-x/shards/")  # nothing written


def test_a_fan_out_pod_reads_only_its_part_of_the_plan(world) -> None:
    """plan writes each shard's part (the plan's header + its queries) and an index of their sha256 after the plan:
    score, sft-data and eval read one part, never the whole plan (~200 MB at 443k queries); without the index (a
    plan from before parts, or a re-plan killed midway) they read the plan itself; verify catches a plan.json
    edited after its parts."""
    from leverplus.errors import IntegrityError
    from leverplus.records import PlanShard
    from leverplus.stages.layout import plan_index_key, plan_part_key
    from leverplus.stages.verify import run_verify

    ctx = world("plan", **{"rl.target_new_queries": 12, "rl.prior_acceptance_rate": 0.5, "rl.shard_size": 10})
    key = plan_key("round-p")
    plan = run_plan(ctx, "rl", key, "round-p")
    assert len(plan.shards) >= 3
    for i in plan.shard_ids():
        part = ctx.plan_shard(key, i)
        assert part == PlanShard.of(plan, i) and part.queries == plan.shards[i] and part.shards == len(plan.shards)
    with pytest.raises(ConfigError, match=rf"shard {len(plan.shards)} is not in .*plan\.json \(shards 0\.\.\d+\)"):
        ctx.plan_shard(key, len(plan.shards))

    whole = ctx.store.get_bytes(key)
    ctx.store.put_bytes(key, b"{not a plan")  # a pod never opens plan.json while the index stands
    assert ctx.plan_shard(key, 1) == PlanShard.of(plan, 1)
    _, problems, _ = run_verify(world("verify"))
    assert [p for p in problems if "differs from the plan its parts were written from" in p]

    ctx.store.put_bytes(key, whole)
    ctx.store.delete(plan_index_key(key))  # no index: the parts are not trusted, the plan itself is read
    ctx.store.put_bytes(plan_part_key(key, 1), b"{stale")
    assert ctx.plan_shard(key, 1) == PlanShard.of(plan, 1)
    again = run_plan(world("plan", **{"rl.target_new_queries": 12, "rl.prior_acceptance_rate": 0.5,
                                      "rl.shard_size": 10}), "rl", key, "round-p", force=True)  # fmt: skip
    assert ctx.plan_shard(key, 1) == PlanShard.of(again, 1)  # the re-plan rewrote the parts and the index
    _, problems, _ = run_verify(world("verify"))
    assert not [p for p in problems if "plan" in p]
    ctx.store.put_bytes(plan_part_key(key, 2), ctx.store.get_bytes(plan_part_key(key, 0)))
    with pytest.raises(IntegrityError, match=r"plan/00002\.json: sha256 differs"):
        ctx.plan_shard(key, 2)


def test_a_rounds_draw_depends_on_its_ordinal_not_on_whether_its_folder_exists(world) -> None:
    """Recording a stage's settings before or after it runs (issue 22 item 9) must not change which queries a round
    plans: the draw is seeded by how many rounds came before it."""
    small = {"rl.target_new_queries": 10, "rl.prior_acceptance_rate": 0.5}
    ctx = world("plan", **small)
    ctx.store.put_bytes("rounds/round-b/settings/plan.yaml", b"{}")  # the CLI used to write this first
    with_folder = run_plan(ctx, "rl", plan_key("round-b"), "round-b")
    ctx.store.delete("rounds/round-b/settings/plan.yaml")
    for key in ctx.store.list("rounds/round-b/"):
        ctx.store.delete(key)
    without = run_plan(world("plan", **small), "rl", plan_key("round-b"), "round-b")
    assert with_folder.question_ids_by_shard() == without.question_ids_by_shard()
