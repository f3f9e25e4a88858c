"""A lease object in the store, so that two data-growth rounds against one store cannot both publish.

Taking the lease is one conditional create (S3 `If-None-Match: *`, enforced by AWS S3, MinIO and moto; on a local
store a hard link, which fails atomically if the name exists). Whoever created it holds it until it is deleted.
A lease names its owner by the work it does ("filter of round R"). A holder killed with -9 (or an OOM kill, a
deadline, node loss) leaves its lease behind; SIGTERM does not: the CLI turns it into an exception, so the lease is
released on the way out. A lease left behind is taken over, with a warning, by
- the same work: a retry of the step, which Argo runs as a new pod on a new host, while no process of the holder is
  provably alive on this host (round ids are workflow names: nothing else filters round R);
- anyone, when the holder is provably gone (it ran on this host and its pid no longer exists).
Otherwise the error names the holder, and `leverplus store clean --release-lease` removes it once an operator has
checked. No expiry by time: that could let two slow rounds publish at once. Argo's `leverplus-store` mutex queues
publishing steps of concurrent workflows before they get here.
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

__all__ = ["describe_holder", "holder_gone", "lease", "read_holder", "this_host"]


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


def this_host() -> str:
    """The pod's name in Kubernetes (its HOSTNAME), else the machine's hostname."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def holder_gone(holder: dict) -> bool:
    """Provably gone: it ran on this host and no process has its pid any more."""
    if holder.get("host") != this_host() or not isinstance(holder.get("pid"), int):
        return False
    if not 0 < holder["pid"] <= 4_194_304:  # no process has it (and os.kill would signal a group, or overflow)
        return True
    return not _alive(holder["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def _abandoned(holder: dict, owner: str) -> bool:
    """A lease left behind: its holder is provably gone, or it is an earlier attempt of this same work that is not
    alive on this host (a retried pod runs on a new host; the old pod is gone with its node or was killed)."""
    if not holder:
        return False
    if holder_gone(holder):
        return True
    here = holder.get("host") == this_host() and isinstance(holder.get("pid"), int) and _alive(holder["pid"])
    return holder.get("owner") == owner and not here


def describe_holder(holder: dict) -> str:
    if not holder:
        return "an unknown holder"
    return f"{holder.get('owner')} on {holder.get('host')} (pid {holder.get('pid')}) since {holder.get('since')}"


@contextmanager
def lease(store: Store, key: str, owner: str) -> Iterator[None]:
    body = json.dumps(
        {"owner": owner, "host": this_host(), "pid": os.getpid(),
         "since": datetime.now(UTC).isoformat(timespec="seconds")}
    ).encode()  # fmt: skip
    if not store.put_if_absent(key, body) and not _take_over(store, key, body, owner):
        raise ConflictError(
            f"{store.uri_for(key)} is held by {describe_holder(read_holder(store, key) or {})}; another round is "
            "publishing. If that process is gone, run `leverplus store clean --release-lease` and retry"
        )
    try:
        yield
    finally:
        _release(store, key, body)


def _release(store: Store, key: str, body: bytes) -> None:
    """Delete the lease if it is still this holder's (after a takeover it is not)."""
    try:
        if store.get_bytes(key) == body:
            store.delete(key)
    except NotFoundError:
        pass


def _take_over(store: Store, key: str, body: bytes, owner: str) -> bool:
    """Replace a lease left behind (see the module's docstring). Two takers may find it at once: only the one that
    creates this lease's takeover marker (an exclusive create, named by the old lease's sha256, kept) may delete it,
    so the other can never delete the winner's new lease."""
    try:
        left = store.get_bytes(key)
    except NotFoundError:  # released meanwhile
        return store.put_if_absent(key, body)
    holder = read_holder(store, key) or {}
    if not _abandoned(holder, owner):
        return False
    if not store.put_if_absent(f"{key}.taken-{hashlib.sha256(left).hexdigest()[:16]}", body):
        return False  # another taker won this lease
    get_logger().warning("taking over a lease left behind", lease=store.uri_for(key), **holder)
    store.delete(key)
    return store.put_if_absent(key, body)
