"""A store on the local filesystem (file:///abs/path or a plain path)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from leverplus.errors import NotFoundError, StoreError
from leverplus.store.base import CHUNK, ObjectInfo, Store, check_key

__all__ = ["LocalStore"]

_TMP_MARK = ".tmp-"  # temp files of in-flight writes; list() never shows them


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = "file://" + self.root.as_posix()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _atomic_write(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Write to a temp file beside the target, fsync, then rename over it: readers never see a partial file."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {target.parent}: {exc.strerror}") from exc
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{_TMP_MARK}")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest())

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._atomic_write(key, [data])

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        def read() -> Iterator[bytes]:
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    yield chunk

        return self._atomic_write(key, read())

    def put_if_absent(self, key: str, data: bytes) -> bool:
        # Write a private temp file, then link(2) it into place: link fails if the target exists, atomically.
        target = self._path(key)
        staging = f"{key}{_TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
        self.put_bytes(staging, data)
        try:
            os.link(self._path(staging), target)
            return True
        except FileExistsError:
            return False
        finally:
            self._path(staging).unlink()

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"{self.uri_for(key)} does not exist") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if _TMP_MARK in name:
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
