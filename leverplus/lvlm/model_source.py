"""Where an LVLM's files come from: a local directory, a hub id, or an `s3://` prefix synced once into a local
cache directory.

The sync is safe when several processes on one node start at once (one scoring pod per GPU): they take an
exclusive file lock; the first downloads into a temporary folder and renames it into place, the others wait and
find it complete. A folder is complete only once it holds `.complete`, which lists every file's size, so a
download killed half-way is never mistaken for a model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from leverplus.config import StoreSettings
from leverplus.errors import ConfigError
from leverplus.log import get_logger
from leverplus.store import open_store

__all__ = ["resolve_model"]

_COMPLETE = ".complete"


def resolve_model(source: str, cache_dir: str | Path, store: StoreSettings | None = None) -> str:
    """A local directory or hub id that `from_pretrained` can load."""
    if source.startswith("s3://"):
        return str(sync_prefix(source, Path(cache_dir).expanduser(), store))
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ConfigError(f"lvlm.model {source}: is a file, expected a model directory, hub id or s3:// prefix")
    if source.startswith(("/", ".", "~", "file:")) or source.count("/") != 1:
        raise ConfigError(f"lvlm.model {source}: no such directory (and not a hub id of the form org/name)")
    return source


def sync_prefix(uri: str, cache_dir: Path, settings: StoreSettings | None = None) -> Path:
    """Download every object under the s3:// prefix `uri` once; later calls return the cached folder."""
    target = cache_dir / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        if (target / _COMPLETE).exists():
            return target
        store = open_store(uri, settings)
        keys = [k for k in store.list() if not k.endswith("/")]
        if not any(k.rsplit("/", 1)[-1] == "config.json" for k in keys):
            raise ConfigError(f"lvlm.model {uri}: no config.json under this prefix ({len(keys)} objects)")
        log = get_logger().bind(model=uri, files=len(keys))
        log.info("syncing model into the local cache", cache=str(target))
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        try:
            sizes = {}
            for key in keys:
                dest = staging / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                with store.open(key) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                sizes[key] = dest.stat().st_size
            (staging / _COMPLETE).write_text(json.dumps({"uri": uri, "sizes": sizes}, sort_keys=True))
            if target.exists():  # not one of ours (ours arrive with their marker): it would block the rename
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("model synced")
        return target
