"""Image and question embeddings, computed once per split and stored as safetensors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from leverplus.cpus import available_cpus
from leverplus.features.table import FeatureTable, feature_key, l2_normalise

if TYPE_CHECKING:
    from collections.abc import Callable

    from leverplus.config import FeatureSettings
    from leverplus.data import VQASplit

__all__ = ["FeatureTable", "compute_features", "feature_key"]


def compute_features(
    data: VQASplit, settings: FeatureSettings, device: str = "cpu", progress: Callable[[int], None] = lambda n: None
) -> FeatureTable:
    """Encode every question of a split; each image is encoded once however many questions share it."""
    records = list(data)
    first_row: dict[int, int] = {}
    for i, r in enumerate(records):
        first_row.setdefault(r.image_id, i)
    unique = list(first_row)
    if settings.encoder == "simple":
        from leverplus.features.simple import encode_image, encode_question

        def encode(image_id: int) -> np.ndarray:
            return encode_image(data.load_image(records[first_row[image_id]]))

        # Decoding, resizing and numpy release the GIL: threads encode the images side by side, in order.
        image_vecs = []
        with ThreadPoolExecutor(available_cpus()) as pool:
            for vector in pool.map(encode, unique):
                image_vecs.append(vector)
                progress(1)
        image_matrix = np.stack(image_vecs)
        question_matrix = np.stack([encode_question(r.question) for r in records])
    elif settings.encoder == "clip":
        from leverplus.features.clip import ClipEncoder

        encoder = ClipEncoder(settings.model, device)
        chunks = []
        for start in range(0, len(unique), settings.batch_size):
            batch = unique[start : start + settings.batch_size]
            chunks.append(encoder.encode_images([data.load_image(records[first_row[i]]) for i in batch]))
            progress(len(batch))
        image_matrix = np.concatenate(chunks)
        question_matrix = np.concatenate(
            [
                encoder.encode_texts([r.question for r in records[s : s + settings.batch_size]])
                for s in range(0, len(records), settings.batch_size)
            ]
        )
    else:
        raise ValueError(f"unknown encoder {settings.encoder!r}; allowed: simple, clip")
    image_row = {image_id: k for k, image_id in enumerate(unique)}
    per_question = image_matrix[[image_row[r.image_id] for r in records]]
    return FeatureTable(
        encoder=settings.encoder,
        split=data.split,
        question_ids=np.asarray([r.question_id for r in records], dtype=np.int64),
        image=l2_normalise(per_question),
        question=l2_normalise(question_matrix),
    )
