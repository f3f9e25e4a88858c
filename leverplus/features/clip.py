"""The `clip` encoder: CLIP image and text embeddings (openai/clip-vit-base-patch32 in production)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["ClipEncoder"]


class ClipEncoder:
    def __init__(self, model: str, device: str = "cpu") -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        from leverplus.errors import ConfigError

        try:
            self.model = CLIPModel.from_pretrained(model).to(device).eval()
            self.processor = CLIPProcessor.from_pretrained(model)
        except OSError as exc:
            raise ConfigError(
                f"features.model {model!r}: cannot load a CLIP model ({str(exc).splitlines()[0]})"
            ) from exc
        self.device = device
        self._torch = torch

    @staticmethod
    def _pooled(output: object) -> object:
        # transformers 5 returns a model output for get_*_features; older versions a tensor.
        return getattr(output, "pooler_output", output)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        with self._torch.no_grad():
            inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
            out = self._pooled(self.model.get_image_features(**inputs))
        return out.float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with self._torch.no_grad():
            inputs = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
            out = self._pooled(self.model.get_text_features(**inputs.to(self.device)))
        return out.float().cpu().numpy()
