"""Strict loading, one rule for every weight file: exactly the expected keys, each with its expected shape."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from leverplus.errors import IntegrityError

__all__ = ["check_state"]


def check_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], where: str) -> None:
    """An IntegrityError naming `where` on a missing or unexpected key or a shape that differs."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise IntegrityError(f"{where}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise IntegrityError(
                f"{where}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
