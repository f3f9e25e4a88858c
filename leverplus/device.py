"""The one device knob (`run.device`) turned into a torch device name, and `policy.precision` into an autocast
dtype."""

from __future__ import annotations

from typing import Any

from leverplus.errors import ConfigError

__all__ = ["autocast_dtype", "precision_name", "torch_device"]


def torch_device(setting: str) -> str:
    """auto: cuda when a GPU is visible, else cpu. Asking for cuda without one is a ConfigError, not a crash later."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device is {setting} but no CUDA device is visible")
    return setting


def autocast_dtype(precision: str, device: str) -> Any:
    """The dtype the clip-lora towers autocast to on `device`, or None for plain fp32. auto: bf16 on cuda (its
    range matches fp32, so no loss scaling), fp32 on cpu (where bf16 matrix products are rarely faster)."""
    import torch

    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def precision_name(dtype: Any) -> str:
    """The policy.precision an autocast dtype stands for (what checkpoints and logs record)."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16"}[dtype]
