"""A split's encoder inputs for the `clip-lora` policy: each image decoded, resized and cropped once (through the same
`VQASplit.load_image` the feature stage uses) and kept as uint8, each question tokenised as the feature stage does;
served as `TowerInputs` for the rows of a batch, every distinct item once.

A training step needs every pool item of its batch (16 queries x 64 items: ~1,000 images), so images that are not
cached are fetched and decoded by a thread pool (store reads wait on the network, PIL and the processor release the
GIL), and what is cached is the crop's uint8 pixels (150 KB at 224 px, a quarter of the normalised floats). They stay
uint8 until the towers normalise them on their device (`TowerInputs.pixels`); cold and cached images take the same
path, so a batch never depends on what the cache held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from leverplus.cpus import available_cpus
from leverplus.data import VQARecord, VQASplit
from leverplus.policy.towers import TowerInputs

__all__ = ["InputBank"]

READERS = min(16, 2 * available_cpus())  # threads fetching and decoding uncached images


class InputBank:
    """`max_images` images' pixels stay cached, least recently used first out (policy.image_cache_images)."""

    def __init__(self, split: VQASplit, processor: Any, max_images: int = 16384) -> None:
        self.split, self.processor, self.max_images = split, processor, max_images
        self._pixels: OrderedDict[int, torch.Tensor] = OrderedDict()  # image_id -> (3, H, W) uint8
        images = processor.image_processor
        self._mean = torch.tensor(images.image_mean, dtype=torch.float32).view(1, 3, 1, 1) / images.rescale_factor
        self._std = torch.tensor(images.image_std, dtype=torch.float32).view(1, 3, 1, 1) / images.rescale_factor

    def _crop(self, record: VQARecord) -> torch.Tensor:
        """A record's image resized and centre-cropped as the processor does, before rescaling: (3, H, W) uint8."""
        image = self.split.load_image(record)
        pixels = self.processor.image_processor(images=[image], do_rescale=False, do_normalize=False,
                                                return_tensors="pt")["pixel_values"][0]  # fmt: skip
        return pixels.to(torch.uint8)

    def _images(self, records: list[VQARecord]) -> torch.Tensor:
        """(N, 3, H, W) uint8 crops of these records' images, fetching uncached ones in parallel."""
        missing = list({r.image_id: r for r in records if r.image_id not in self._pixels}.values())
        fetched: dict[int, torch.Tensor] = {}
        if missing:
            with ThreadPoolExecutor(min(READERS, len(missing))) as pool:
                fetched = dict(zip([r.image_id for r in missing], pool.map(self._crop, missing), strict=True))
        crops = []
        for image_id in (r.image_id for r in records):
            crop = fetched.get(image_id)
            if crop is None:
                crop = self._pixels[image_id]
                self._pixels.move_to_end(image_id)
            crops.append(crop)
        for image_id, crop in fetched.items():  # in a fixed order: the cache's state never depends on the threads
            self._pixels[image_id] = crop
            if len(self._pixels) > self.max_images:
                self._pixels.popitem(last=False)
        return torch.stack(crops)

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
        crops = self._images([self.split[q] for q in items])
        index = index if nested else index[:, 0]
        return TowerInputs(crops, self._mean, self._std, text["input_ids"], text["attention_mask"], index)
