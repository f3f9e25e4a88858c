"""`leverplus features`: compute each split's embeddings once and store them (skips what exists)."""

from __future__ import annotations

from leverplus.device import torch_device
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
            if ctx.store.exists(key) and not force:
                ctx.log.info("features exist, skipping", uri=ctx.store.uri_for(key))
                continue
            data = ctx.split(split)
            settings = ctx.settings.features.model_copy(update={"encoder": encoder})
            with progress(len({r.image_id for r in data}), f"{encoder} features {split}") as update:
                table = compute_features(data, settings, _device(ctx, encoder), progress=update)
            written.append(table.save(ctx.store))
            ctx.log.info("features written", uri=written[-1], questions=len(table.question_ids), dim=table.dim)
    return written


def _device(ctx: StageContext, encoder: str) -> str:
    """Only CLIP runs on a device; the `simple` encoder is numpy and need not import torch."""
    return torch_device(ctx.settings.run.device) if encoder == "clip" else "cpu"
