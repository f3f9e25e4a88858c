"""Artifact store addressed by URI: s3://bucket/prefix, file:///abs/path, or a plain local path."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from leverplus.errors import StoreError
from leverplus.store.base import ObjectInfo, Store, check_key
from leverplus.store.local import LocalStore
from leverplus.store.s3 import S3Options, S3Store

if TYPE_CHECKING:
    from leverplus.config import StoreSettings

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "S3Options",
    "S3Store",
    "Store",
    "check_key",
    "open_object",
    "open_store",
    "s3_options",
    "store_or_full_uri",
]


def s3_options(settings: StoreSettings | None = None) -> S3Options:
    if settings is None:
        return S3Options()

    def secret(value: object) -> str | None:
        return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]

    return S3Options(
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        access_key_id=secret(settings.access_key_id),
        secret_access_key=secret(settings.secret_access_key),
        max_attempts=settings.max_attempts,
        connect_timeout_s=settings.connect_timeout_s,
        multipart_threshold_mb=settings.multipart_threshold_mb,
    )


def open_store(uri: str, settings: StoreSettings | None = None) -> Store:
    """The store rooted at uri. S3 connection options come from settings (or the AWS defaults)."""
    if not uri:
        raise StoreError("empty store URI")
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"invalid S3 URI {uri!r}: expected s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path, s3_options(settings))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"invalid file URI {uri!r}: expected file:///absolute/path")
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise StoreError(f"unsupported store URI scheme {parsed.scheme!r} in {uri!r} (use s3://, file:// or a path)")
    return LocalStore(Path(uri))


def store_or_full_uri(store: Store, uri_or_key: str) -> str:
    """A full URI (scheme:// or an absolute path) as it is; anything else is a key inside `store`."""
    if "://" in uri_or_key or uri_or_key.startswith("/"):
        return uri_or_key
    return store.uri_for(uri_or_key)


def open_object(uri: str, settings: StoreSettings | None = None) -> tuple[Store, str]:
    """Split an object URI into (store of its parent folder, object name)."""
    head, sep, name = uri.rstrip("/").rpartition("/")
    if not sep:
        head = "."
    elif not head:
        head = "/"
    if not name or head in ("s3:/", "file:", "file:/", "file://"):
        raise StoreError(f"invalid object URI {uri!r}: no object name")
    return open_store(head, settings), check_key(name)
