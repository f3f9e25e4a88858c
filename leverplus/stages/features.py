"""`leverplus features`: compute each split's embeddings once and store them (skips what exists)."""

from __future__ import annotations

from leverplus.device import torch_device
from leverplus.errors import IntegrityError
from leverplus.features import compute_features, feature_key
from leverplus.progress import progress
from leverplus.stages.context import StageContext

__all__ = ["run_features"]


def needed_encoders(ctx: StageContext) -> list[str]:
    """The policy's encoder, plus `simple` when the simulated LVLM needs it for its perception."""
    encoders = [ctx.settings.features.encoder]
    if ctx.settings.lvlm.backend == "sim" and "simple" not in encoders:
        encoders.append("simple")
    return encoders


def run_features(ctx: StageContext, force: bool = False) -> list[str]:
    written = []
    for encoder in needed_encoders(ctx):
        for split in dict.fromkeys((ctx.settings.data.train_split, ctx.settings.data.eval_split)):
            key = feature_key(encoder, split)
            data = ctx.split(split)
            if ctx.store.exists(key) and not force and _covers(ctx, encoder, split, data):
                ctx.log.info("features exist, skipping", uri=ctx.store.uri_for(key))
                continue
            settings = ctx.settings.features.model_copy(update={"encoder": encoder})
            with progress(len({r.image_id for r in data}), f"{encoder} features {split}") as update:
                table = compute_features(data, settings, _device(ctx, encoder), progress=update)
            written.append(table.save(ctx.store))
            ctx.log.info("features written", uri=written[-1], questions=len(table.question_ids), dim=table.dim)
    return written


def _covers(ctx: StageContext, encoder: str, split: str, data: object) -> bool:
    """The stored table has every question of the split: a grown world (`data synth --add`) is re-encoded."""
    from leverplus.features import FeatureTable

    try:
        have = set(FeatureTable.load(ctx.store, encoder, split).question_ids.tolist())
    except IntegrityError as exc:  # derived data: computing it again gives what it held
        ctx.log.warning("the stored features are damaged: recomputing them", problem=str(exc))
        return False
    missing = len({r.question_id for r in data} - have)  # type: ignore[attr-defined]
    if missing:
        ctx.log.info("the split has grown since its features were computed: re-encoding", split=split, new=missing)
    return not missing


def _device(ctx: StageContext, encoder: str) -> str:
    """Only CLIP runs on a device; the `simple` encoder is numpy and need not import torch."""
    return torch_device(ctx.settings.run.device) if encoder == "clip" else "cpu"
