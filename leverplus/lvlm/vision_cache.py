"""Vision-encoder outputs per image, computed once and kept in a bounded LRU.

The 20 candidates of a query share its image and ICD images recur across queries, so most prompts of a round
reuse images the encoder has already seen; for Qwen2.5-VL-3B the vision tower is about half the compute per image.
Each image is loaded, resized (within `lvlm.min_pixels`..`max_pixels`) and preprocessed once, and all images a
call is missing go through the encoder together. Grids (the image's patch layout, which fixes its token count)
are tiny and kept for every image seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from leverplus.data.schemas import VQARecord

__all__ = ["VisionCache"]

ENCODE_CHUNK = 32  # images per vision-encoder call


class VisionCache:
    def __init__(
        self, model: Any, image_processor: Any, load_image: Callable[[VQARecord], Image.Image], capacity: int
    ) -> None:
        self.model, self.image_processor, self.load_image = model, image_processor, load_image
        self.capacity = capacity
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._grids: dict[str, tuple[int, int, int]] = {}
        self.encoded = 0  # images sent through the encoder (misses), for logs and benchmarks

    def grid(self, record: VQARecord) -> tuple[int, int, int]:
        if record.image_key not in self._grids:
            self.features([record])
        return self._grids[record.image_key]

    def tokens(self, record: VQARecord) -> int:
        """LLM tokens this image occupies in a prompt: one per merged patch."""
        t, h, w = self.grid(record)
        return t * h * w // self.image_processor.merge_size**2

    def features(self, records: Sequence[VQARecord]) -> list[torch.Tensor]:
        """Per-record encoder outputs (tokens x hidden), in order; encodes what is missing in chunks."""
        missing = list({r.image_key: r for r in records if r.image_key not in self._features}.values())
        fresh: dict[str, torch.Tensor] = {}
        for start in range(0, len(missing), ENCODE_CHUNK):
            fresh.update(self._encode(missing[start : start + ENCODE_CHUNK]))
        out = []
        for r in records:
            feats = fresh.get(r.image_key)
            if feats is None:
                feats = self._features[r.image_key]
                self._features.move_to_end(r.image_key)
            out.append(feats)
        for key, feats in fresh.items():  # insert after reading, so this call's own images are never evicted early
            self._features[key] = feats
            while len(self._features) > self.capacity:
                self._features.popitem(last=False)
        return out

    @torch.inference_mode()
    def _encode(self, records: Sequence[VQARecord]) -> dict[str, torch.Tensor]:
        pixels = self.image_processor(images=[self.load_image(r) for r in records], return_tensors="pt")
        grid = pixels["image_grid_thw"].to(self.model.device)
        values = pixels["pixel_values"].to(self.model.device)
        pooled = self.model.model.get_image_features(values, grid).pooler_output
        self.encoded += len(records)
        for r, g in zip(records, grid.tolist(), strict=True):
            self._grids[r.image_key] = (g[0], g[1], g[2])
        return {r.image_key: f for r, f in zip(records, pooled, strict=True)}
