"""A split's features: L2-normalised image and question embeddings keyed by question_id, stored as safetensors at
features/<encoder>/<split>.safetensors and computed once per split."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leverplus.checksums import DIGEST_FIELD, contents_sha256, header_metadata, sort_header
from leverplus.errors import DataError, IntegrityError
from leverplus.store import Store

__all__ = ["FeatureTable", "feature_key"]


def feature_key(encoder: str, split: str) -> str:
    return f"features/{encoder}/{split}.safetensors"


@dataclass
class FeatureTable:
    encoder: str
    split: str
    question_ids: np.ndarray  # (N,) int64, ascending
    image: np.ndarray  # (N, Di) float32, rows L2-normalised
    question: np.ndarray  # (N, Dq) float32, rows L2-normalised

    def __post_init__(self) -> None:
        self._row = {int(q): i for i, q in enumerate(self.question_ids)}

    def rows(self, question_ids: list[int] | np.ndarray) -> np.ndarray:
        try:
            return np.fromiter((self._row[int(q)] for q in question_ids), dtype=np.int64, count=len(question_ids))
        except KeyError as exc:
            raise DataError(f"question_id {exc.args[0]} has no {self.encoder} features in split {self.split}") from None

    def joint(self, question_ids: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Concatenated image+question embedding, unit norm: what the policy and the samplers see. (N, Di+Dq)"""
        idx = slice(None) if question_ids is None else self.rows(question_ids)
        joint = np.concatenate([self.image[idx], self.question[idx]], axis=1)
        return (joint * np.float32(1 / np.sqrt(2.0))).astype(np.float32, copy=False)

    @property
    def dim(self) -> int:
        return self.image.shape[1] + self.question.shape[1]

    def save(self, store: Store) -> str:
        from safetensors.numpy import save_file

        key = feature_key(self.encoder, self.split)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "features.safetensors"
            tensors = {"question_id": self.question_ids, "image": self.image, "question": self.question}
            metadata = {"encoder": self.encoder, "split": self.split}
            metadata[DIGEST_FIELD] = contents_sha256(tensors, metadata)
            save_file(tensors, str(path), metadata=metadata)
            sort_header(path)  # the same table, the same bytes
            store.put_file(key, path)
        return store.uri_for(key)

    @classmethod
    def load(cls, store: Store, encoder: str, split: str) -> FeatureTable:
        from safetensors import SafetensorError
        from safetensors.numpy import load

        key = feature_key(encoder, split)
        raw = store.get_bytes(key)
        try:
            tensors, metadata = load(raw), header_metadata(raw)
        except (SafetensorError, json.JSONDecodeError, ValueError) as exc:
            raise IntegrityError(f"{store.uri_for(key)}: not a valid safetensors feature file ({exc})") from exc
        missing = {"question_id", "image", "question"} - set(tensors)
        if missing:
            raise IntegrityError(f"{store.uri_for(key)}: missing tensors {sorted(missing)}")
        recorded = metadata.get(DIGEST_FIELD)  # None: a table written before digests were recorded
        if recorded is not None and recorded != contents_sha256(tensors, metadata):
            raise IntegrityError(f"{store.uri_for(key)}: sha256 differs from its contents (altered); `leverplus "
                                 "features --force` recomputes it")  # fmt: skip
        if (metadata.get("encoder", encoder), metadata.get("split", split)) != (encoder, split):
            raise IntegrityError(f"{store.uri_for(key)}: holds {metadata.get('encoder')} features of split "
                                 f"{metadata.get('split')}")  # fmt: skip
        return cls(encoder, split, tensors["question_id"], tensors["image"], tensors["question"])


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
