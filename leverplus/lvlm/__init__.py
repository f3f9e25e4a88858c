"""LVLM backends behind one interface, and the one prompt builder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leverplus.lvlm.base import LVLM, Request, Response
from leverplus.lvlm.prompt import PROMPT_HASH, build_messages, postprocess_answer

if TYPE_CHECKING:
    from leverplus.stages.context import StageContext

__all__ = ["LVLM", "PROMPT_HASH", "Request", "Response", "build_messages", "load_lvlm", "postprocess_answer"]


def load_lvlm(ctx: StageContext) -> LVLM:
    backend = ctx.settings.lvlm.backend
    if backend == "sim":
        from leverplus.lvlm.sim import SimLVLM

        perception = [ctx.features(s, "simple") for s in ("train", "val") if _has(ctx, s)]
        return SimLVLM(perception, ctx.split(ctx.settings.data.train_split), seed=ctx.settings.lvlm.sim_seed)
    from leverplus.errors import ConfigError

    raise ConfigError(f"lvlm.backend {backend!r} is not available in this build yet; use lvlm.backend=sim")


def _has(ctx: StageContext, split: str) -> bool:
    from leverplus.features.table import feature_key

    return ctx.store.exists(feature_key("simple", split))
