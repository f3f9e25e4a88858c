"""The state an interrupted training loop needs to continue byte-identically, as one safetensors object.

Tensors: the model (`model.<name>`), the optimizer's per-parameter state (`optim.<index>.<name>`) and torch's RNG
state. Metadata (strings): the epochs done, the step count, the optimizer's param groups, the Python RNG state, the
training curve so far, `guard`, the provenance the state belongs to (settings hash, init, data version): a state
left by other settings is never resumed, and `sha256`, a digest of every tensor and every other metadata field: a
changed float or field is an IntegrityError, never a silently different run. One object, written atomically after
each epoch, so a kill leaves either the previous epoch's state or this one's. Never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from leverplus.checksums import DIGEST_FIELD, contents_sha256, header_metadata
from leverplus.errors import IntegrityError
from leverplus.store import Store

__all__ = ["TrainState", "check_state", "load_state", "save_state"]


@dataclass
class TrainState:
    epoch: int  # epochs completed
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch.optim state_dict
    python_rng: tuple
    torch_rng: torch.Tensor
    curve: list[dict[str, float]]


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def save_state(store: Store, key: str, state: TrainState, guard: dict[str, Any]) -> None:
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.model.items()}
    for index, values in state.optimizer["state"].items():
        for name, value in values.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["torch_rng"] = state.torch_rng
    metadata = {
        "epoch": str(state.epoch),
        "step": str(state.step),
        "param_groups": json.dumps(state.optimizer["param_groups"]),
        "python_rng": json.dumps(_rng_to_json(state.python_rng)),
        "curve": json.dumps(state.curve),
        "guard": json.dumps(guard, sort_keys=True),
    }
    metadata[DIGEST_FIELD] = _digest(tensors, metadata)
    store.put_bytes(key, save(tensors, metadata=metadata))


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    arrays = {k: v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy() for k, v in tensors.items()}
    shapes = {f"shape.{k}": f"{v.dtype}{list(v.shape)}" for k, v in tensors.items()}  # the bytes alone lose them
    return contents_sha256(arrays, {**metadata, **shapes})


def check_state(store: Store, key: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state's tensors and metadata, checked against its digest; IntegrityError naming it otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    raw = store.get_bytes(key)
    try:
        tensors, metadata = load(raw), header_metadata(raw)
        json.loads(metadata["guard"])
    except (SafetensorError, ValueError, KeyError) as exc:
        raise IntegrityError(f"{store.uri_for(key)}: not a training state ({exc})") from exc
    if metadata.get(DIGEST_FIELD) != _digest(tensors, metadata):
        raise IntegrityError(f"{store.uri_for(key)}: sha256 differs from its contents (altered or truncated)")
    return tensors, metadata


def load_state(store: Store, key: str, guard: dict[str, Any]) -> TrainState | None:
    """The saved state, or None when there is none or it belongs to other settings (then training starts over)."""
    if not store.exists(key):
        return None
    tensors, metadata = check_state(store, key)
    if json.loads(metadata["guard"]) != guard:
        return None
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, field = name.split(".", 2)
            optim_state.setdefault(int(index), {})[field] = value
    return TrainState(
        epoch=int(metadata["epoch"]),
        step=int(metadata["step"]),
        model={k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": optim_state, "param_groups": json.loads(metadata["param_groups"])},
        python_rng=_rng_from_json(json.loads(metadata["python_rng"])),
        torch_rng=tensors["torch_rng"],
        curve=json.loads(metadata["curve"]),
    )
