"""LVLM backends behind one interface, and the one prompt builder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leverplus.lvlm.base import LVLM, Request, Response
from leverplus.lvlm.prompt import PROMPT_HASH, build_messages, postprocess_answer

if TYPE_CHECKING:
    from leverplus.config import LVLMSettings

__all__ = [
    "LVLM",
    "PROMPT_HASH",
    "Request",
    "Response",
    "build_messages",
    "lvlm_id",
    "postprocess_answer",
]


def lvlm_id(settings: LVLMSettings) -> str:
    """The id a backend records with every scored group, computed from settings without loading a model."""
    if settings.backend == "sim":
        from leverplus.lvlm.sim import SIM_VERSION

        return f"{SIM_VERSION}/seed{settings.sim_seed}"
    return f"hf:{settings.model}"
