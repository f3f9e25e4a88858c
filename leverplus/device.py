"""The one device knob (`run.device`) turned into a torch device name."""

from __future__ import annotations

from leverplus.errors import ConfigError

__all__ = ["torch_device"]


def torch_device(setting: str) -> str:
    """auto: cuda when a GPU is visible, else cpu. Asking for cuda without one is a ConfigError, not a crash later."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device is {setting} but no CUDA device is visible")
    return setting
