"""A store on the local filesystem (file:///abs/path or a plain path)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from leverplus.errors import NotFoundError, StoreError
from leverplus.store.base import CHUNK, ObjectInfo, Store, TempObject, check_key

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
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{_TMP_MARK}")
        except OSError as exc:
            raise StoreError(f"writing {self.uri_for(key)}: {exc.strerror or exc}") from exc
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
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            # Disk full, read-only, denied on our side: one line naming the object, nothing left. (A source file
            # that cannot be read is the caller's error and names itself.)
            if isinstance(exc, OSError) and exc.filename in (None, tmp, str(target)):
                raise StoreError(f"writing {self.uri_for(key)}: {exc.strerror or exc}") from exc
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
        except OSError as exc:
            raise StoreError(f"reading {self.uri_for(key)}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():  # a mistyped store path holds nothing (never walk its parent)
            return []
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

    def temp_objects(self) -> list[TempObject]:
        now, found = time.time(), []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in (n for n in files if _TMP_MARK in n):
                path = Path(dirpath, name)
                stat = path.stat()
                target = name.split(_TMP_MARK, 1)[0].removeprefix(".")
                key = Path(dirpath, target).relative_to(self.root).as_posix()
                found.append(TempObject(key, path.relative_to(self.root).as_posix(), _age(now, stat.st_mtime),
                                        stat.st_size))  # fmt: skip
        return sorted(found, key=lambda t: t.ident)

    def remove_temp(self, temp: TempObject) -> None:
        self.root.joinpath(*check_key(temp.ident).split("/")).unlink(missing_ok=True)


_SKEW_S = 3600.0


def _age(now: float, mtime: float) -> float:
    """Seconds since a temp file was written. An mtime in the future within an hour is clock skew between hosts
    (an NFS store): age 0. Further ahead, no write in flight made it (a copied or restored file): old."""
    if mtime - now > _SKEW_S:
        return float("inf")
    return max(0.0, now - mtime)
