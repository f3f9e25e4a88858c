"""`leverplus growth-check`: print "true" when the balanced set has grown enough since the newest trained policy's
data version (or nothing was trained yet), else "false". data-growth runs training and evaluation only on true."""

from __future__ import annotations

import json

from leverplus.stages.context import StageContext
from leverplus.stages.filter import latest_version
from leverplus.stages.layout import BALANCED

__all__ = ["run_growth_check"]


def _queries(ctx: StageContext, version: str) -> int:
    return int(json.loads(ctx.store.get_bytes(f"{BALANCED}/{version}.manifest.json"))["stats"]["queries"])


def run_growth_check(ctx: StageContext) -> str:
    latest = latest_version(ctx)
    if latest == 0:
        ctx.log.info("growth check: no balanced set yet")
        return "false"
    trained = [
        json.loads(ctx.store.get_bytes(k))["data_version"]
        for k in ctx.store.list("runs/")
        if k.endswith("/checkpoints/grpo/config.json")
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
