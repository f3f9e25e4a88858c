"""`leverplus growth-check`: print "true" when the balanced set has grown enough since the newest trained policy's
data version (or nothing was trained yet), else "false". data-growth runs training and evaluation only on true.

With `--run`, the decision is the run's: its own checkpoints never count as an earlier retrain, and the first
decision is recorded (runs/<run>/growth-check.json) and printed again on every rerun, so a resumed or retried run
trains *and evaluates* what it decided to, instead of finding its own GRPO checkpoint and skipping evaluation."""

from __future__ import annotations

import json

from leverplus.stages.context import StageContext
from leverplus.stages.filter import latest_version
from leverplus.stages.layout import BALANCED, run_prefix

__all__ = ["run_growth_check"]


def _queries(ctx: StageContext, version: str) -> int:
    return int(json.loads(ctx.store.get_bytes(f"{BALANCED}/{version}.manifest.json"))["stats"]["queries"])


def run_growth_check(ctx: StageContext, run_id: str | None = None) -> str:
    if run_id is None:
        return _decide(ctx, None)
    key = f"{run_prefix(run_id)}/growth-check.json"
    if ctx.store.exists(key):
        recorded = json.loads(ctx.store.get_bytes(key))["decision"]
        ctx.log.info("growth check already decided for this run", run=run_id, decision=recorded)
        return recorded
    decision = _decide(ctx, run_id)
    ctx.put_json(key, {"decision": decision, "balanced_version": f"v{latest_version(ctx)}"})
    return decision


def _decide(ctx: StageContext, run_id: str | None) -> str:
    latest = latest_version(ctx)
    if latest == 0:
        ctx.log.info("growth check: no balanced set yet")
        return "false"
    trained = [
        json.loads(ctx.store.get_bytes(k))["data_version"]
        for k in ctx.store.list("runs/")
        if k.endswith("/checkpoints/grpo/config.json") and k.split("/")[1] != run_id
    ]
    now = _queries(ctx, f"v{latest}")
    if not trained:
        ctx.log.info("growth check: nothing trained yet", balanced_queries=now)
        return "true"
    newest = max(trained, key=lambda v: int(v[1:]))
    before = _queries(ctx, newest)
    grown = now >= (1 + ctx.settings.rl.retrain_growth) * before
    ctx.log.info("growth check", trained_on=newest, trained_queries=before, balanced_queries=now, retrain=grown)
    return "true" if grown else "false"
