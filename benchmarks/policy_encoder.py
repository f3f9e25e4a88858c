"""Training throughput of the selector with the `frozen` encoder (stored features) against `clip-lora` (CLIP towers
with LoRA adapters inside the policy), in RCE steps on groups of score's shape, in the synthetic world.

    python benchmarks/policy_encoder.py [--architecture tiny|vit-b-32] [--groups 64] [--pool 64] [--candidates 20]
                                        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--epochs 2]

The CLIP is built from a config with random weights (leverplus/features/tiny.py): `tiny` for CPU, `vit-b-32`
(openai/clip-vit-base-patch32's architecture, the same FLOPs) for a GPU. Both policies are placed as a stage places
them (run.device, policy.precision: leverplus/device.py): the frozen one on cpu, the clip-lora one on --device with
--precision. Prints queries per second of each, and the GPU's peak memory when on cuda.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from figures import recorded

from leverplus.data import load_split
from leverplus.data.synth import synthesize
from leverplus.device import autocast_dtype, torch_device
from leverplus.features import FeatureTable
from leverplus.features.tiny import build_clip
from leverplus.policy import PointerSelector, PolicyConfig
from leverplus.policy.bank import InputBank
from leverplus.policy.groups import Group
from leverplus.policy.towers import load_processor, load_towers
from leverplus.policy.train import train_rce
from leverplus.store import open_store


def groups_of(ids: list[int], n: int, pool: int, candidates: int) -> list[Group]:
    rng = random.Random(0)
    out = []
    for q in rng.sample(ids, n):
        items = rng.sample([i for i in ids if i != q], pool)
        out.append(
            Group(
                q, items, [rng.sample(items, 2) for _ in range(candidates)], [rng.random() for _ in range(candidates)]
            )
        )
    return out


def queries_per_second(net: PointerSelector, groups: list[Group], source: object, epochs: int) -> float:
    options = {"lr": 1e-3, "tau_start": 1.0, "tau_end": 1.0, "batch_size": 16, "grad_clip": 1.0, "seed": 0}
    train_rce(net, groups[:16], source, source, epochs=1, sink=lambda *_: None, **options)  # warm-up: caches, allocator
    _sync(net.device)
    start = time.perf_counter()
    train_rce(net, groups, source, source, epochs=epochs, sink=lambda *_: None, **options)
    _sync(net.device)
    return epochs * len(groups) / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", choices=("tiny", "vit-b-32"), default="tiny")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--device", default="auto", help="run.device of the clip-lora policy")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after a one-batch warm-up")
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded(f"policy-encoder-{args.architecture}-{args.device}", args.write):
        device = torch_device(args.device)
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(str(Path(tmp) / "world"))
            synthesize(store, 0, {"train": max(300, 2 * args.pool)})
            split = load_split(store, "train")
            ids = sorted(r.question_id for r in split)
            groups = groups_of(ids, args.groups, args.pool, args.candidates)
            clip = build_clip(Path(tmp) / "clip", architecture=args.architecture)
            towers = load_towers(str(clip), rank=8, alpha=16.0)
            rng = np.random.default_rng(0)
            half = towers.dim // 2
            vectors = rng.standard_normal((len(ids), towers.dim)).astype(np.float32)
            table = FeatureTable(
                "simple", "train", np.asarray(ids, dtype=np.int64), vectors[:, :half], vectors[:, half:]
            )
            frozen = queries_per_second(
                PointerSelector(PolicyConfig(feature_dim=towers.dim)), groups, table, args.epochs
            )
            towers.autocast = autocast_dtype(args.precision, device)
            net = PointerSelector(PolicyConfig(feature_dim=towers.dim), towers).to(device)
            lora = queries_per_second(net, groups, InputBank(split, load_processor(str(clip))), args.epochs)
        precision = "bf16 autocast" if towers.autocast is not None else "fp32"
        print(f"{args.architecture} CLIP, {args.groups} groups of {args.candidates} candidates, pools of {args.pool}, "
              f"{torch.get_num_threads()} CPU threads; LoRA rank 8 on q/k/v/out projections, "
              f"{towers.trainable_parameters():,} trainable tower parameters")  # fmt: skip
        print(f"frozen:    {frozen:8.1f} queries/s (cpu)")
        print(f"clip-lora: {lora:8.3g} queries/s ({device}, {precision}; {frozen / lora:.1f}x slower)")
        if device.startswith("cuda"):
            print(f"clip-lora peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB "
                  f"({torch.cuda.get_device_name(device)})")  # fmt: skip


if __name__ == "__main__":
    main()
