"""A split's encoder inputs for the `clip-lora` policy: each image decoded and preprocessed once (through the same
`VQASplit.load_image` the feature stage uses) and kept, each question tokenised as the feature stage does; served
as `TowerInputs` for the rows of a batch, every distinct item once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from leverplus.data import VQASplit
from leverplus.policy.towers import TowerInputs

__all__ = ["InputBank"]


class InputBank:
    """`max_images` preprocessed images stay cached, least recently used first out: at 224 px an image is 0.6 MB,
    so the default holds a few thousand pools' worth (about 2.4 GB) however large the split."""

    def __init__(self, split: VQASplit, processor: Any, max_images: int = 4096) -> None:
        self.split, self.processor, self.max_images = split, processor, max_images
        self._pixels: OrderedDict[int, torch.Tensor] = OrderedDict()  # image_id -> (3, H, W)

    def _pixel(self, question_id: int) -> torch.Tensor:
        record = self.split[question_id]
        if record.image_id in self._pixels:
            self._pixels.move_to_end(record.image_id)
            return self._pixels[record.image_id]
        image = self.split.load_image(record)
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        self._pixels[record.image_id] = pixels
        if len(self._pixels) > self.max_images:
            self._pixels.popitem(last=False)
        return pixels

    def inputs(self, rows: Sequence[int] | Sequence[Sequence[int]]) -> TowerInputs:
        """Rows of question ids (a flat list: one item per row; lists: a pool per row, padded with item 0, which the
        pool mask hides) -> the distinct items' inputs and each row's index into them."""
        nested = bool(rows) and isinstance(rows[0], Sequence)
        lists: list[Sequence[int]] = list(rows) if nested else [[q] for q in rows]  # type: ignore[misc]
        items = sorted({q for row in lists for q in row})
        where = {q: i for i, q in enumerate(items)}
        width = max(len(row) for row in lists)
        index = torch.zeros(len(lists), width, dtype=torch.long)
        for r, row in enumerate(lists):
            index[r, : len(row)] = torch.tensor([where[q] for q in row], dtype=torch.long)
        # Tokenised as the feature stage does (features/clip.py), per batch: cheap next to the towers.
        text = self.processor(text=[self.split[q].question for q in items], return_tensors="pt", padding=True,
                              truncation=True)  # fmt: skip
        pixels = torch.stack([self._pixel(q) for q in items])
        return TowerInputs(pixels, text["input_ids"], text["attention_mask"], index if nested else index[:, 0])
