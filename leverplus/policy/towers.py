"""The `clip-lora` policy encoder: CLIP's image and text towers inside the selector, with LoRA adapters (peft) on
their attention projections, so the selector learns its own features instead of re-weighting frozen cosines.

Its output is what the `frozen` encoder reads from the feature table: the image and question embeddings, each L2-
normalised, concatenated and scaled by 1/sqrt(2) (features/table.py `joint`). The pointer network on top is the
same. Only the adapters train; the base CLIP weights never change and never enter a checkpoint: a checkpoint holds
the adapters and the head, with the base model's id and the sha256 of its weights, checked on load.

A batch's items go through the towers once: `TowerInputs` holds each distinct item's pixels and tokens once, plus
the index of every row into them; the head encodes each query and pool once and decodes all of a group's G candidates
from that encoding.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LORA_TARGETS", "ClipTowers", "TowerInputs", "base_fingerprint", "load_processor", "load_towers"]

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]  # the attention projections of both towers
ADAPTER = "policy"  # the trained adapters; frozen ones beside them have other names


@dataclass
class TowerInputs:
    """Distinct items' encoder inputs, and which item every row of a batch is. Pixels travel as the processor's
    uint8 crops (a quarter of the bytes to the device) and are normalised where the towers run (`pixels`)."""

    crops: torch.Tensor  # (U, 3, H, W) uint8: resized and centre-cropped, not yet rescaled
    mean: torch.Tensor  # (1, 3, 1, 1) the processor's image_mean / rescale_factor (0-255 units)
    std: torch.Tensor  # (1, 3, 1, 1) the processor's image_std / rescale_factor
    input_ids: torch.Tensor  # (U, L)
    attention_mask: torch.Tensor  # (U, L)
    index: torch.Tensor  # (B,) or (B, P): rows into the U items

    def pixels(self) -> torch.Tensor:
        """(U, 3, H, W) the CLIP image processor's pixel_values (up to float rounding)."""
        return (self.crops.float() - self.mean) / self.std

    def to(self, device: torch.device | str) -> TowerInputs:
        return TowerInputs(*(getattr(self, f.name).to(device) for f in fields(self)))


def base_fingerprint(model: nn.Module) -> str:
    """sha256 over the base weights' names, dtypes, shapes and bytes (adapters excluded): what a checkpoint's
    adapters were trained on top of."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        name = name.replace("base_model.model.", "").replace(".base_layer", "")
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _pooled(output: Any) -> torch.Tensor:
    return getattr(output, "pooler_output", output)  # transformers 5 returns a model output for get_*_features


class ClipTowers(nn.Module):
    def __init__(self, clip: nn.Module, base_id: str, rank: int, alpha: float) -> None:
        from peft import LoraConfig, get_peft_model

        super().__init__()
        self.base_id, self.base_sha256 = base_id, base_fingerprint(clip)
        self.lora = {"rank": rank, "alpha": alpha, "targets": LORA_TARGETS}
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, lora_dropout=0.0)
        self.clip = get_peft_model(clip, config, adapter_name=ADAPTER)  # freezes the base, adapters start at zero
        self.autocast: torch.dtype | None = None  # mixed precision of the towers' forward (policy.precision)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dim(self) -> int:
        config = self.clip.base_model.model.config
        return 2 * config.projection_dim

    def embed(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(U, 2 * projection_dim): the joint embedding of U items, as the feature table stores it. Under
        `autocast` the towers' matrix products run in that dtype; weights, adapters, their gradients and the
        normalised output stay fp32."""
        with self._precision(pixel_values.device):
            image = _pooled(self.clip.get_image_features(pixel_values=pixel_values))
            text = _pooled(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
        joint = torch.cat([F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)], dim=-1)
        return joint / math.sqrt(2.0)

    def _precision(self, device: torch.device) -> Any:
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    def forward(self, inputs: TowerInputs) -> torch.Tensor:
        """Every row's embedding, each distinct item encoded once. -> index.shape + (D,)"""
        return self.embed(inputs.pixels(), inputs.input_ids, inputs.attention_mask)[inputs.index]

    def add_frozen_adapter(self, name: str, state: dict[str, torch.Tensor], where: str) -> None:
        """Adapters `state` (as `adapter_state` gives them) as a frozen second adapter `name` on the same base: GRPO's
        reference, or another checkpoint evaluated on this base. The base is shared, not copied (at ViT-B/32 it is
        ~150 M parameters, adapters ~1 M). A name in use is replaced."""
        self._set_adapter_state(name, state, where)

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """The towers with the frozen adapter `name` in place of the policy's."""
        self.clip.set_adapter(name, inference_mode=True)
        try:
            yield
        finally:
            self.clip.set_adapter(ADAPTER)

    @contextmanager
    def base_only(self) -> Iterator[None]:
        """The towers without their adapters: exactly the base CLIP."""
        with self.clip.disable_adapter():
            yield

    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {
            k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.clip, adapter_name=ADAPTER).items()
        }

    def load_adapter_state(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Strict: the adapters of exactly these targets and rank, or an error naming `where`."""
        self._set_adapter_state(ADAPTER, state, where)

    def _set_adapter_state(self, name: str, state: dict[str, torch.Tensor], where: str) -> None:
        from peft import set_peft_model_state_dict

        from leverplus.errors import IntegrityError
        from leverplus.policy.strict import check_state

        check_state(self.adapter_state(), state, f"{where} (adapters)")  # every adapter has the policy's shapes
        if name != ADAPTER:  # a frozen adapter beside the policy's, (re)made with its targets and rank
            if name in self.clip.peft_config:
                self.clip.delete_adapter(name)
            self.clip.add_adapter(name, self.clip.peft_config[ADAPTER])
            self.clip.set_adapter(ADAPTER)  # the policy's adapters train, a frozen one never does
        result = set_peft_model_state_dict(self.clip, state, adapter_name=name)
        if getattr(result, "unexpected_keys", None):
            raise IntegrityError(f"{where}: adapter keys not loaded {result.unexpected_keys[:3]}")

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def load_towers(base: str, rank: int, alpha: float) -> ClipTowers:
    """CLIP from `base` (a model id or directory, as features.model) with fresh adapters (zero: the towers start
    as the base)."""
    from transformers import CLIPModel

    from leverplus.errors import ConfigError

    try:
        clip = CLIPModel.from_pretrained(base)
    except OSError as exc:
        raise ConfigError(f"features.model {base!r}: cannot load a CLIP model ({str(exc).splitlines()[0]})") from exc
    return ClipTowers(clip, base, rank, alpha)


def load_processor(base: str) -> Any:
    from transformers import CLIPProcessor

    from leverplus.errors import ConfigError

    try:
        return CLIPProcessor.from_pretrained(base)
    except OSError as exc:
        raise ConfigError(f"features.model {base!r}: cannot load its processor ({str(exc).splitlines()[0]})") from exc
