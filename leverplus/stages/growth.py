"""`leverplus growth-check`: print "true" when the balanced set has grown enough since the newest trained policy's
data version (or nothing was trained yet), else "false". data-growth runs training and evaluation only on true.

With `--run`, the decision is the run's: its own checkpoints never count as an earlier retrain, and the first
decision is recorded (runs/<run>/growth-check.json) and printed again on every rerun, so a resumed or retried run
trains *and evaluates* what it decided to, instead of finding its own GRPO checkpoint and skipping evaluation."""

from __future__ import annotations

import json
import math

from leverplus.catalog import Catalog
from leverplus.stages.balanced import latest_version
from leverplus.stages.context import StageContext
from leverplus.stages.layout import run_prefix

__all__ = ["decision_key", "growth_summary", "run_growth_check"]


def _queries(ctx: StageContext, version: str) -> int:
    return Catalog(ctx.store).version(version).queries


def decision_key(run_id: str) -> str:
    """Where a run's growth decision is recorded (once)."""
    return f"{run_prefix(run_id)}/growth-check.json"


def run_growth_check(ctx: StageContext, run_id: str | None = None) -> str:
    if run_id is None:
        return _decide(ctx, None)["decision"]
    key = decision_key(run_id)
    if ctx.store.exists(key):
        recorded = json.loads(ctx.store.get_bytes(key))
        ctx.log.info("growth check already decided for this run", run=run_id, decision=recorded["decision"])
        return recorded["decision"]
    decision = _decide(ctx, run_id)
    ctx.put_json(key, decision)
    return decision["decision"]


def growth_summary(decision: dict) -> str:
    """One sentence a person can act on: what was decided and from which numbers."""
    head = f"growth check {decision['decision']}"
    if decision.get("trained_on") is None:
        return f"{head}: {decision.get('reason', 'nothing trained yet')}"
    return (
        f"{head}: balanced set {decision['balanced_version']} has {decision['balanced_queries']} queries; retraining "
        f"needs {decision['needed_queries']} ({1 + decision['retrain_growth']:g} x {decision['trained_queries']} of "
        f"{decision['trained_on']}, the newest trained policy's data)"
    )


def _decide(ctx: StageContext, run_id: str | None) -> dict:
    latest = latest_version(ctx.store)
    if latest == 0:
        ctx.log.info("growth check: no balanced set yet")
        return {"decision": "false", "balanced_version": "v0", "reason": "no balanced set yet"}
    trained = [
        json.loads(ctx.store.get_bytes(k))["data_version"]
        for k in ctx.store.list("runs/")
        if k.endswith("/checkpoints/grpo/config.json") and k.split("/")[1] != run_id
    ]
    now = _queries(ctx, f"v{latest}")
    if not trained:
        ctx.log.info("growth check: nothing trained yet", balanced_queries=now)
        return {"decision": "true", "balanced_version": f"v{latest}", "reason": "nothing trained yet"}
    newest = max(trained, key=lambda v: int(v[1:]))
    before = _queries(ctx, newest)
    growth = ctx.settings.rl.retrain_growth
    needed = math.ceil(round((1 + growth) * before, 6))  # 1.2 x 10 is 12, not 12.000000000000002
    grown = now >= needed
    ctx.log.info("growth check", trained_on=newest, trained_queries=before, balanced_queries=now, retrain=grown)
    return {
        "decision": "true" if grown else "false",
        "balanced_version": f"v{latest}",
        "balanced_queries": now,
        "trained_on": newest,
        "trained_queries": before,
        "retrain_growth": growth,
        "needed_queries": needed,
    }
