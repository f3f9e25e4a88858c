"""The artifact-store interface. Keys are relative, '/'-separated object names under the store's root URI.

Every put is atomic: a reader sees either the previous object or the complete new one, never a partial write.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from leverplus.errors import StoreError

__all__ = ["CHUNK", "ObjectInfo", "Store", "TempObject", "check_key", "sha256_stream"]

CHUNK = 1 << 20
_BAD_CHARS = re.compile(r"[\x00-\x1f\\]")


@dataclass(frozen=True)
class ObjectInfo:
    """What a put wrote: its key, size in bytes and sha256 (hex)."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class TempObject:
    """What an interrupted write left behind: a local temp file, or an S3 multipart upload never completed."""

    key: str  # the object it was going to become
    ident: str  # the temp file's name, or the upload id
    age_s: float  # inf: its mtime lies far in the future (a copied or restored file)
    size: int

    @property
    def age(self) -> str:
        return "dated in the future" if self.age_s == float("inf") else f"{self.age_s / 3600:.1f} h old"


def check_key(key: str) -> str:
    """Reject keys that could escape the store root or alias another object."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise StoreError(f"invalid object key {key!r}: must be a non-empty relative path")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StoreError(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    if _BAD_CHARS.search(key):
        raise StoreError(f"invalid object key {key!r}: control character or backslash")
    return key


def sha256_stream(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class Store(ABC):
    """An artifact store rooted at `uri`."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Write data under key atomically, replacing any previous object."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Upload a local file under key atomically (multipart on S3 for large files)."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create key only if it does not exist. Returns False, writing nothing, when it already exists."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming binary reader; raises NotFoundError naming the URI."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys under prefix (a folder-like prefix; '' lists everything)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key (tests and explicit clean-up only). Missing keys are not an error."""

    @abstractmethod
    def temp_objects(self) -> list[TempObject]:
        """Debris of interrupted writes (invisible to readers and to list())."""

    @abstractmethod
    def remove_temp(self, temp: TempObject) -> None: ...

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def sha256(self, key: str) -> str:
        """sha256 (hex) of the stored object's bytes."""
        with self.open(key) as stream:
            return sha256_stream(iter(lambda: stream.read(CHUNK), b""))[0]

    def uri_for(self, key: str) -> str:
        return self.uri.rstrip("/") + "/" + check_key(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
