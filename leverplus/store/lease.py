"""A lease object in the store, so that two data-growth rounds against one store cannot both publish.

Taking the lease is one conditional create (S3 `If-None-Match: *`, enforced by AWS S3, MinIO and moto; on a local
store a hard link, which fails atomically if the name exists). Whoever created it holds it until it is deleted.
A holder killed with -9 leaves its lease behind: the error names the holder and the object to delete once you
have checked that it is gone. This sits on top of the CronWorkflow's `concurrencyPolicy: Forbid`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from leverplus.errors import ConflictError
from leverplus.store.base import Store

__all__ = ["lease"]


@contextmanager
def lease(store: Store, key: str, owner: str) -> Iterator[None]:
    body = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not store.put_if_absent(key, json.dumps(body).encode()):
        try:
            holder = json.loads(store.get_bytes(key))
            who = f"{holder.get('owner')} on {holder.get('host')} (pid {holder.get('pid')}) since {holder.get('since')}"
        except (ValueError, OSError, ConflictError):
            who = "an unknown holder"
        raise ConflictError(
            f"{store.uri_for(key)} is held by {who}; another round is publishing. If that process "
            f"is gone, delete the lease object and retry"
        )
    try:
        yield
    finally:
        store.delete(key)
