"""Shard outputs of the fan-out stages (score, sft-data, eval): a JSONL object and a manifest beside it.

    rounds/<round-id>/shards/00003.jsonl
    rounds/<round-id>/shards/00003.manifest.json   sha256 of the shard, settings and prompt hashes, row count

The shard is written first and its manifest second (each atomically), so a shard without a manifest is one whose
writer died between the two. On resume a shard counts as done only if it matches its manifest; a shard that does
not (missing manifest, truncated or altered bytes) is redone, which is safe because shards are deterministic.
A shard written under a different prompt or other settings is a conflict: mixing them in one round would bias the data.
Readers (filter, training, report, verify) read shards through `read_shard`, which fails naming the object.
"""

from __future__ import annotations

from typing import Any

from leverplus.errors import ConflictError, IntegrityError
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.records import Manifest
from leverplus.stages.context import StageContext

__all__ = ["manifest_key", "read_shard", "shard_done", "write_shard"]


def manifest_key(key: str) -> str:
    return key.removesuffix(".jsonl") + ".manifest.json"


def write_shard(ctx: StageContext, key: str, rows: list[Any], **stats: Any) -> str:
    sha = ctx.put_jsonl(key, rows)
    name = key.rsplit("/", 1)[-1]
    ctx.put_json(manifest_key(key), ctx.manifest("shard", outputs={name: sha}, stats={"rows": len(rows), **stats}))
    ctx.log.info("shard written", uri=ctx.store.uri_for(key), rows=len(rows))
    return ctx.store.uri_for(key)


def read_shard(ctx: StageContext, key: str) -> bytes:
    """The shard's bytes, verified against its manifest; one made with another prompt is a conflict."""
    raw, manifest = ctx.read_verified(key, manifest_key(key))
    if manifest.prompt_hash != PROMPT_HASH:
        raise ConflictError(
            f"{ctx.store.uri_for(key)} was made with prompt {manifest.prompt_hash}, this code's prompt is "
            f"{PROMPT_HASH}: use a new round/run id, or --force to redo the shard"
        )
    return raw


def shard_done(ctx: StageContext, key: str, force: bool) -> bool:
    """Resume and retries redo only what is missing or untrustworthy; --force redoes everything."""
    if force or not ctx.store.exists(key):
        return False
    try:
        read_shard(ctx, key)
    except IntegrityError as exc:
        ctx.log.warning("redoing shard", uri=ctx.store.uri_for(key), reason=str(exc))
        return False
    made_with = Manifest.model_validate_json(ctx.store.get_bytes(manifest_key(key))).settings_hash
    if made_with != ctx.settings_hash:  # reusing it would mix settings inside one round or run (issue 12 D5)
        raise ConflictError(
            f"{ctx.store.uri_for(key)} was made with settings {made_with[:12]}, this command's are "
            f"{ctx.settings_hash[:12]}: use a new round/run id, or --force to redo the shard"
        )
    ctx.log.info("shard exists and matches its manifest, skipping", uri=ctx.store.uri_for(key))
    return True
