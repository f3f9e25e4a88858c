"""What interrupted work leaves in a store, and removing it: temp objects of killed writes (local temp files,
S3 multipart uploads never completed) and a publishing lease whose holder is gone. `verify` lists them;
`leverplus store clean` removes temp objects older than a threshold and a lease whose holder is provably gone, or
the lease an operator names with --release-lease."""

from __future__ import annotations

from leverplus.errors import ConflictError
from leverplus.store.base import Store, TempObject
from leverplus.store.lease import describe_holder, holder_gone, read_holder

__all__ = ["clean", "debris"]


def debris(store: Store, lease_key: str, older_than_s: float) -> tuple[list[TempObject], str]:
    """(temp objects older than the threshold, a description of the lease or "")."""
    temps = [t for t in store.temp_objects() if t.age_s >= older_than_s]
    holder = read_holder(store, lease_key)
    if holder is None:
        return temps, ""
    gone = " (its holder is gone)" if holder_gone(holder) else ""
    return temps, f"{store.uri_for(lease_key)} held by {describe_holder(holder)}{gone}"


def clean(store: Store, lease_key: str, older_than_s: float, release_lease: bool) -> list[str]:
    """Remove the debris; returns one line per thing removed. A lease whose holder may be alive is kept unless
    release_lease is given."""
    removed = []
    temps, lease = debris(store, lease_key, older_than_s)
    if lease and not (release_lease or holder_gone(read_holder(store, lease_key) or {})):
        raise ConflictError(f"{lease}: it may still be publishing; check, then rerun with --release-lease")
    for temp in temps:
        store.remove_temp(temp)
        removed.append(f"removed temp object {temp.ident} of {store.uri_for(temp.key)} ({temp.age})")
    if lease:
        store.delete(lease_key)
        removed.append(f"released lease {lease}")
    return removed
