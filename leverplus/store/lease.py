"""A lease object in the store, so that two data-growth rounds against one store cannot both publish.

Taking the lease is one conditional create (S3 `If-None-Match: *`, enforced by AWS S3, MinIO and moto; on a local
store a hard link, which fails atomically if the name exists). Whoever created it holds it until it is deleted.
A holder killed with -9 leaves its lease behind. When the holder is provably gone (it ran on this host and its pid
no longer exists) the next taker removes it, with a warning; otherwise (another host, another pod) the error names
the holder, and `leverplus store clean --release-lease` removes it once an operator has checked. No expiry by time:
that could let two slow rounds publish at once. This sits on top of the CronWorkflow's `concurrencyPolicy: Forbid`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from leverplus.errors import ConflictError, LeverPlusError, NotFoundError
from leverplus.log import get_logger
from leverplus.store.base import Store

__all__ = ["describe_holder", "holder_gone", "lease", "read_holder"]


def read_holder(store: Store, key: str) -> dict | None:
    """The lease's holder, or None when there is no lease (or it is unreadable: then it is held by someone unknown,
    returned as {})."""
    if not store.exists(key):
        return None
    try:
        holder = json.loads(store.get_bytes(key))
    except (ValueError, LeverPlusError):
        return {}
    return holder if isinstance(holder, dict) else {}


def holder_gone(holder: dict) -> bool:
    """Provably gone: it ran on this host and no process has its pid any more."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if not 0 < holder["pid"] <= 4_194_304:  # no process has it (and os.kill would signal a group, or overflow)
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


def describe_holder(holder: dict) -> str:
    if not holder:
        return "an unknown holder"
    return f"{holder.get('owner')} on {holder.get('host')} (pid {holder.get('pid')}) since {holder.get('since')}"


@contextmanager
def lease(store: Store, key: str, owner: str) -> Iterator[None]:
    body = json.dumps(
        {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
         "since": datetime.now(UTC).isoformat(timespec="seconds")}
    ).encode()  # fmt: skip
    if not store.put_if_absent(key, body) and not _take_over(store, key, body):
        raise ConflictError(
            f"{store.uri_for(key)} is held by {describe_holder(read_holder(store, key) or {})}; another round is "
            "publishing. If that process is gone, run `leverplus store clean --release-lease` and retry"
        )
    try:
        yield
    finally:
        store.delete(key)


def _take_over(store: Store, key: str, body: bytes) -> bool:
    """Replace a lease whose holder is provably gone. Two takers may find the same dead holder at once: only the
    one that creates this lease's takeover marker (an exclusive create, named by the dead lease's sha256, kept)
    may delete it, so the other can never delete the winner's new lease."""
    try:
        dead = store.get_bytes(key)
    except NotFoundError:  # released meanwhile
        return store.put_if_absent(key, body)
    holder = read_holder(store, key) or {}
    if not (holder and holder_gone(holder)):
        return False
    if not store.put_if_absent(f"{key}.taken-{hashlib.sha256(dead).hexdigest()[:16]}", body):
        return False  # another taker won this dead lease
    get_logger().warning("removing a lease whose holder is gone", lease=store.uri_for(key), **holder)
    store.delete(key)
    return store.put_if_absent(key, body)
