"""A digest of a safetensors object's contents, kept in its own metadata: the format has no checksum, so one changed
float would otherwise load as a valid, silently different tensor. Used by the feature tables and the epoch states
that training resumes from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["DIGEST_FIELD", "contents_sha256", "header_metadata", "sort_header"]

DIGEST_FIELD = "sha256"


def contents_sha256(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """sha256 of every array (name, dtype, shape, bytes) and every metadata field but the digest, in name order."""
    fields = {k: v for k, v in metadata.items() if k != DIGEST_FIELD}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        digest.update(array.view(np.uint8).tobytes())
    return digest.hexdigest()


def header_metadata(raw: bytes) -> dict[str, str]:
    """The string metadata of a safetensors object: its header is an 8-byte little-endian length and JSON."""
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + length]).get("__metadata__") or {}


def sort_header(path: Path) -> None:
    """Rewrite a safetensors file's header with its keys sorted, in place. The library writes its metadata from a
    hash map, in an order that changes from process to process: the same tensors would give different bytes. The
    sorted header has the same length (the same JSON, reordered), so no tensor moves."""
    with open(path, "r+b") as f:
        length = int.from_bytes(f.read(8), "little")
        header = f.read(length)
        parsed = json.loads(header)
        if "__metadata__" in parsed:
            parsed["__metadata__"] = dict(sorted(parsed["__metadata__"].items()))
        ordered = json.dumps(parsed, separators=(",", ":"), sort_keys=True).encode()
        if len(ordered) > length:  # never: the same fields; but a header that grew would move every tensor
            raise ValueError(f"{path}: sorted safetensors header is longer than the original")
        f.seek(8)
        f.write(ordered.ljust(length, b" "))
