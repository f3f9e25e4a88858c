"""LVLM backends behind one interface, and the one prompt builder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leverplus.lvlm.base import LVLM, Request, Response
from leverplus.lvlm.prompt import PROMPT_HASH, build_messages, postprocess_answer

if TYPE_CHECKING:
    from PIL import Image

    from leverplus.config import LVLMSettings
    from leverplus.data.schemas import VQARecord
    from leverplus.stages.context import StageContext

__all__ = [
    "LVLM",
    "PROMPT_HASH",
    "Request",
    "Response",
    "build_messages",
    "load_lvlm",
    "lvlm_id",
    "postprocess_answer",
]


def lvlm_id(settings: LVLMSettings) -> str:
    """The id a backend records with every scored group, computed from settings without loading a model."""
    if settings.backend == "sim":
        from leverplus.lvlm.sim import SIM_VERSION

        return f"{SIM_VERSION}/seed{settings.sim_seed}"
    return f"hf:{settings.model}"


def load_lvlm(ctx: StageContext) -> LVLM:
    backend = ctx.settings.lvlm.backend
    if backend == "sim":
        from leverplus.lvlm.sim import SimLVLM

        perception = [ctx.features(s, "simple") for s in ("train", "val") if _has(ctx, s)]
        return SimLVLM(perception, ctx.split(ctx.settings.data.train_split), seed=ctx.settings.lvlm.sim_seed)
    from leverplus.device import torch_device
    from leverplus.lvlm.hf import load_hf

    def load_image(record: VQARecord) -> Image.Image:
        return ctx.split(record.split).load_image(record)

    return load_hf(ctx.settings.lvlm, load_image, torch_device(ctx.settings.run.device), ctx.settings.store)


def _has(ctx: StageContext, split: str) -> bool:
    from leverplus.features.table import feature_key

    return ctx.store.exists(feature_key("simple", split))
