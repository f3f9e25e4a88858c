"""What a clip-lora training step waits for before the towers run: the inputs of 16 queries with 64-item pools
(~1,000 images) from `InputBank`, cold (every image fetched from the store, decoded, resized and cropped) with one
reader thread and with the default pool of readers, and warm (every crop cached as uint8).

    python benchmarks/input_bank.py [--image-px 640] [--steps 3] [--queries 16] [--pool 64]

The images are the synthetic world's scenes rendered at --image-px (VQAv2's COCO images are ~640 x 480 JPEGs) in a
local store; the processor is openai/clip-vit-base-patch32's (224 px crops). Prints milliseconds per step and the
cache's bytes per image.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from figures import recorded

from leverplus.data import load_split, synth
from leverplus.features.tiny import build_clip
from leverplus.policy import bank as bank_module
from leverplus.policy.bank import InputBank
from leverplus.policy.towers import load_processor
from leverplus.store import open_store


def batches(ids: list[int], steps: int, queries: int, pool: int) -> list[list[list[int]]]:
    """`steps` batches of `queries` pools, each the query followed by `pool` other items (disjoint batches)."""
    rng = random.Random(0)
    order = rng.sample(ids, len(ids))
    per = queries * (pool + 1)
    return [[order[s * per + q * (pool + 1) : s * per + (q + 1) * (pool + 1)] for q in range(queries)]
            for s in range(steps)]  # fmt: skip


def ms_per_step(bank: InputBank, steps: list[list[list[int]]]) -> float:
    start = time.perf_counter()
    for rows in steps:
        bank.inputs(rows)
    return 1000 * (time.perf_counter() - start) / len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-px", type=int, default=640)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded("input-bank", args.write):
        synth.IMAGE_SIZE = args.image_px  # the scenes are drawn at this size
        per_step = args.queries * (args.pool + 1)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(str(Path(tmp) / "world"))
            synth.synthesize(store, 0, {"train": 3 * per_step * args.steps})  # 3 questions per image: images differ
            split = load_split(store, "train")
            processor = load_processor(str(build_clip(Path(tmp) / "clip", architecture="vit-b-32")))
            ids = sorted({r.image_id: r.question_id for r in split}.values())  # one question per image
            steps = batches(ids, args.steps, args.queries, args.pool)
            readers = bank_module.READERS
            bank_module.READERS = 1
            sequential = ms_per_step(InputBank(split, processor), steps)
            bank_module.READERS = readers
            warm_bank = InputBank(split, processor)
            parallel = ms_per_step(warm_bank, steps)
            warm = ms_per_step(warm_bank, steps)
            crop = next(iter(warm_bank._pixels.values()))
        print(f"{args.steps} steps of {args.queries} queries x {args.pool}-item pools ({per_step} images each), "
              f"{args.image_px} px JPEGs in a local store, 224 px crops")  # fmt: skip
        print(f"cold, 1 reader:        {sequential:8.0f} ms/step  ({per_step / sequential * 1000:6.0f} images/s)")
        print(f"cold, {readers:2d} readers:      {parallel:8.0f} ms/step  ({per_step / parallel * 1000:6.0f} images/s;"
              f" {sequential / parallel:.1f}x)")  # fmt: skip
        print(f"warm (cached crops):   {warm:8.0f} ms/step  ({sequential / warm:.0f}x faster than cold, 1 reader)")
        print(
            f"cache: {crop.numel() * crop.element_size() / 1024:.0f} KiB per image ({crop.dtype}, {tuple(crop.shape)})"
        )


if __name__ == "__main__":
    main()
