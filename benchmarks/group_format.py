"""The on-disk format of candidate groups: JSONL (what shards and segments use) against columnar Parquet, on groups
of `score`'s exact shape. Prints bytes per group and read time per group for each way of reading.

    python benchmarks/group_format.py [--groups 10000]      (Parquet rows need `pip install pyarrow`)
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
import zlib
from collections.abc import Callable

from figures import recorded
from scored_rounds import random_group

from leverplus.config import load_settings
from leverplus.lvlm import lvlm_id
from leverplus.records import CandidateGroup, canonical_json
from leverplus.stages.compat import group_facts


def per_group(fn: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Best of `repeats`, in microseconds per group."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def row(label: str, microseconds: float) -> None:
    print(f"  {label + ':':<48} {microseconds:6.1f} us per group")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--write", action="store_true", help="publish the output into the docs")
    args = parser.parse_args()
    n = args.groups
    with recorded("group-format", args.write):
        settings = load_settings(overrides={"lvlm.backend": "sim", "features.encoder": "simple"})
        facts = {**group_facts(settings), "lvlm": lvlm_id(settings.lvlm)}
        rng = random.Random(0)
        rows = [random_group(rng, q, "round-0001", facts) for q in range(n)]
        lines = [canonical_json(r) for r in rows]
        jsonl = b"\n".join(lines) + b"\n"
        print(f"{n} groups (20 candidates of 2 ICDs, a 64-item pool)")
        print(f"JSONL: {len(jsonl) / n:,.0f} B/group ({len(zlib.compress(jsonl, 6)) / n:,.0f} B zlib-compressed)")
        row("json.loads per line (what filter does)", per_group(lambda: [json.loads(x) for x in lines], n))
        row("CandidateGroup per line (what training does)",
            per_group(lambda: [CandidateGroup.model_validate_json(x) for x in lines], n))  # fmt: skip
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.parquet as pq
        except ImportError:
            print("Parquet: pyarrow is not installed (pip install pyarrow to measure it)")
            return
        table = pa.Table.from_pylist(rows)
        for codec in ("snappy", "zstd"):
            out = io.BytesIO()
            pq.write_table(table, out, compression=codec)
            print(f"Parquet ({codec}): {len(out.getvalue()) / n:,.0f} B/group")
        data = io.BytesIO()
        pq.write_table(table, data)
        raw = data.getvalue()
        row("read the table", per_group(lambda: pq.read_table(io.BytesIO(raw)), n))

        def balance_counts() -> object:
            read = pq.read_table(io.BytesIO(raw), columns=["question_id", "candidates"])
            return pc.list_value_length(read.column("candidates")), pc.list_flatten(read.column("candidates"))

        row("read + the columns the filter needs", per_group(balance_counts, n))
        row("read + rows as Python dicts", per_group(lambda: pq.read_table(io.BytesIO(raw)).to_pylist(), n))


if __name__ == "__main__":
    main()
