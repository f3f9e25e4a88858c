"""Candidate-scoring throughput: a naive loop vs the `hf` backend's scorer, on the same candidates.

    python benchmarks/score_throughput.py               # CPU: a tiny Qwen2.5-VL (2 layers), 224x224 images
    python benchmarks/score_throughput.py --full-size   # GPU: the Qwen2.5-VL-3B architecture, random weights

The candidates are laid out as a round lays them out: each query has a pool of 40 train items and 20 distinct
2-shot ICD sequences drawn from it, scored in one call per query (as `leverplus score` does).
  naive   one prompt at a time: the processor on the raw images, plain `generate` (HFLVLM.answer_naive)
  ours    HFLVLM.answer: vision outputs cached per image, ids built from cached grids, length-sorted batches
Both start with nothing cached. Prints candidates/s for both, the ratio, and whether the answers agree (on CPU in
fp32 they must be identical: the exit code is 1 if not). With --full-size it also prints prefill tokens/s and the
FLOP-bound limit: FLOPs per prompt estimated from the config (vision tower + LLM prefill) against the GPU's peak
dense bf16 rate, and the fraction of it achieved.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from figures import recorded
from PIL import Image

from leverplus.config import load_settings
from leverplus.data import load_split
from leverplus.data.synth import synthesize
from leverplus.lvlm.base import Request
from leverplus.lvlm.hf import HFLVLM, load_hf
from leverplus.lvlm.tiny import build_qwen_vl
from leverplus.lvlm.vision_cache import VisionCache
from leverplus.store import open_store

T = TypeVar("T")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}  # dense, SXM figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="Qwen2.5-VL-3B architecture (needs a GPU)")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="time each path this many times, keep the fastest")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--num-beams", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument(
        "--image-size",
        default=None,
        help="WxH every image is resized to (default 224x224, 640x480 with --full-size: a COCO image)",
    )
    parser.add_argument("--max-pixels", type=int, default=256 * 28 * 28)
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak dense bf16 TFLOP/s override")
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    with recorded(
        "score-throughput-full-size" if args.full_size else f"score-throughput-beams-{args.num_beams}", args.write
    ):
        width, height = map(int, (args.image_size or ("640x480" if args.full_size else "224x224")).split("x"))
        overrides = {
            "lvlm.num_beams": args.num_beams,
            "lvlm.batch_size": args.batch_size,
            "lvlm.max_pixels": args.max_pixels,
        }

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "world"
            synthesize(open_store(str(root)), 0, {"train": 3 * (args.queries + 60), "val": 3})
            train = load_split(str(root), "train")

            def load_image(record: object) -> Image.Image:  # decode + resize, every call: what a data loader does
                return train.load_image(record).resize((width, height), Image.Resampling.BICUBIC)  # type: ignore[arg-type]

            lvlm = _build(args.full_size, Path(tmp) / "model", load_image, overrides)
            batches = _candidates(list(train), args.queries, args.candidates, args.shots)
            lvlm.answer_naive(batches[-1][:2])  # warm-up on a query that is not measured
            lvlm.answer(batches[-1][2:4])
            batches = batches[:-1]
            naive_s, naive = _best_of(args.repeats, lambda: [r for b in batches for r in lvlm.answer_naive(b)])

            def ours_cold() -> list:  # every repeat starts with nothing cached
                lvlm.vision = VisionCache(lvlm.model, lvlm.processor.image_processor, load_image, lvlm.vision.capacity)
                return [r for b in batches for r in lvlm.answer(b)]

            ours_s, ours = _best_of(args.repeats, ours_cold)

        n = sum(map(len, batches))
        agree = sum(a.prediction == b.prediction for a, b in zip(naive, ours, strict=True))
        device = torch.cuda.get_device_name() if lvlm.model.device.type == "cuda" else platform.processor() or "cpu"
        print(
            f"date {datetime.date.today()}  device {device}  cpu cores {os.cpu_count()}  torch {torch.__version__}  "
            f"threads {torch.get_num_threads()}"
        )
        print(
            f"model {'Qwen2.5-VL-3B architecture (random weights)' if args.full_size else 'tiny Qwen2.5-VL'}  "
            f"dtype {lvlm.model.dtype}  images {width}x{height}  max_pixels {args.max_pixels}  "
            f"beams {args.num_beams}  batch {args.batch_size}"
        )
        print(
            f"candidates {n} ({len(batches)} queries x {args.candidates}, {args.shots} shots)  "
            f"images encoded by ours {lvlm.vision.encoded} (naive: {n * (args.shots + 1)})"
        )
        print(f"naive {n / naive_s:9.1f} candidates/s  ({naive_s:.2f} s, best of {args.repeats})")
        print(f"ours  {n / ours_s:9.1f} candidates/s  ({ours_s:.2f} s, best of {args.repeats}, cold cache each time)")
        print(f"ratio {naive_s / ours_s:.2f}x   answers identical: {agree}/{n}")
        if lvlm.model.device.type == "cuda":
            _flop_report(lvlm, batches, ours_s, args.peak_tflops)
        if lvlm.model.dtype == torch.float32 and agree != n:
            raise SystemExit("the optimised scorer's answers differ from the naive loop's")


def _build(full_size: bool, path: Path, load_image: object, overrides: dict) -> HFLVLM:
    if not full_size:
        build_qwen_vl(path)
        torch.manual_seed(0)
        return load_hf(load_settings(overrides={**overrides, "lvlm.model": str(path)}).lvlm, load_image)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        raise SystemExit("--full-size needs a CUDA GPU (the 3B model in fp32 on a CPU would take hours)")
    model, processor = build_qwen_vl(full_size=True, device="cuda", dtype=torch.bfloat16)
    settings = load_settings(overrides={**overrides, "lvlm.model": "Qwen2.5-VL-3B-architecture"}).lvlm
    return HFLVLM(model, processor, load_image, settings)  # type: ignore[arg-type]


def _candidates(records: list, queries: int, candidates: int, shots: int) -> list[list[Request]]:
    """Per query: a 40-item pool of other train items and `candidates` distinct ordered sequences from it."""
    rng = np.random.default_rng(0)
    out = []
    for query in records[: queries + 1]:
        others = [r for r in records if r.image_id != query.image_id]
        pool = [others[i] for i in rng.choice(len(others), size=40, replace=False)]
        seen: set[tuple[int, ...]] = set()
        batch = []
        while len(batch) < candidates:
            seq = tuple(int(i) for i in rng.choice(len(pool), size=shots, replace=False))
            if seq not in seen:
                seen.add(seq)
                batch.append(Request(query, tuple(pool[i] for i in seq)))
        out.append(batch)
    return out


def _best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `repeats` runs: the least disturbed by whatever else the machine is doing."""
    return min((_timed(fn) for _ in range(repeats)), key=lambda r: r[0])


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def _flop_report(lvlm: HFLVLM, batches: list[list[Request]], seconds: float, peak_tflops: float | None) -> None:
    name = torch.cuda.get_device_name()
    peak = peak_tflops * 1e12 if peak_tflops else next((v for k, v in PEAK_BF16.items() if k in name), None)
    text_tokens, flops, prompt_flops = 0, 0.0, flop_counter(lvlm.model)
    for batch in batches:
        enc = lvlm._cached_batch(batch, with_answer=False)
        for row, request in enumerate(batch):
            tokens = int(enc.inputs["attention_mask"][row].sum())
            grids = [lvlm.vision.grid(r) for r in (*request.icds, request.query)]
            text_tokens += tokens
            flops += prompt_flops(tokens, grids)
    n = sum(map(len, batches))
    print(
        f"prefill {text_tokens / seconds:,.0f} tokens/s  ({text_tokens / n:.0f} tokens per prompt)  "
        f"{flops / n / 1e12:.2f} TFLOP per prompt (vision + LLM prefill, uncached)"
    )
    if peak is None:
        print(f"peak bf16 rate of {name!r} unknown: pass --peak-tflops")
        return
    limit = peak / (flops / n)
    print(
        f"FLOP-bound limit {limit:.1f} candidates/s at {peak / 1e12:.0f} TFLOP/s peak; achieved {n / seconds:.1f} "
        f"= {n / seconds / limit:.1%} of it"
    )


def flop_counter(model: torch.nn.Module) -> Callable[[int, list[tuple[int, int, int]]], float]:
    """Forward FLOPs of one prompt's prefill, as a function of its token count and image grids: 2 per parameter
    per token/patch plus attention scores and mixing (causal in the LLM; windowed except in the full-attention
    blocks of the vision tower). Parameters are counted once, here, not once per prompt."""
    text, vision = model.config.text_config, model.config.vision_config
    llm_params = sum(p.numel() for n, p in model.model.language_model.named_parameters() if "embed" not in n)
    vis_params = sum(p.numel() for p in model.model.visual.parameters())
    window = (vision.window_size // vision.patch_size) ** 2
    full = len(vision.fullatt_block_indexes)

    def prompt_flops(tokens: int, grids: list[tuple[int, int, int]]) -> float:
        flops = 2.0 * llm_params * tokens + 2.0 * text.num_hidden_layers * tokens**2 * text.hidden_size
        for t, h, w in grids:
            patches = t * h * w
            attended = full * patches + (vision.depth - full) * min(window, patches)
            flops += 2.0 * vis_params * patches + 4.0 * vision.hidden_size * patches * attended
        return flops

    return prompt_flops


if __name__ == "__main__":
    main()
