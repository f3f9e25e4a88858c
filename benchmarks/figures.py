"""Figures in the docs are written by the script that measures them, so none goes stale by hand.

A document marks each block of figures:

    <!-- figures:NAME (benchmarks/SCRIPT.py --write) -->
    ... what the script last wrote ...
    <!-- /figures:NAME -->

and the script, run with `--write`, calls `publish("NAME", markdown)`, which replaces what lies between the marks in
every document that holds them (tests/test_docs.py checks that every table of figures sits in such a block and that
its script publishes that name).
"""

from __future__ import annotations

import io
import os
import platform
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def machine() -> str:
    """One line naming when and where figures were measured."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    return f"measured {date.today().isoformat()} on {where}"


def publish(name: str, markdown: str) -> list[Path]:
    """Replace block NAME in every document that marks it; the documents written. A block no document marks is
    an error: the figures would go nowhere."""
    key = re.escape(name)
    pattern = re.compile(rf"(<!-- figures:{key} \([^)]*\) -->\n).*?(<!-- /figures:{key} -->)", re.S)
    written = []
    for doc in DOCS:
        text = doc.read_text()
        new, count = pattern.subn(lambda m: m.group(1) + markdown.strip("\n") + "\n" + m.group(2), text)
        if count:
            doc.write_text(new)
            written.append(doc)
    if not written:
        raise SystemExit(f"no document marks <!-- figures:{name} (...) -->; add the block where the figures belong")
    for doc in written:
        print(f"wrote figures:{name} into {doc.relative_to(ROOT)}")
    return written


def table(header: list[str], rows: list[list[object]], right: int = 1) -> str:
    """A Markdown table; columns from `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def shots_table(rows: dict[str, dict[int, float]], mmr: str, best: str) -> str:
    """Systems' accuracy per shot count (%), their mean over 2-4 shots, and the share of the headroom between MMR and
    the best sequence in the pool that each captures there (mean over 2-4 shots; below MMR is negative)."""
    shots = sorted(next(iter(rows.values())))
    many = [k for k in shots if k >= 2]

    def captured(acc: dict[int, float]) -> str:
        gap = sum(rows[best][k] - rows[mmr][k] for k in many)
        return f"{100 * sum(acc[k] - rows[mmr][k] for k in many) / gap:+.0f} %" if gap > 0 else "n/a"

    body = [
        [name, *[f"{acc[k]:.2f}" for k in shots], f"{sum(acc[k] for k in many) / len(many):.2f}", captured(acc)]
        for name, acc in rows.items()
    ]
    header = ["system", *[f"shot {k}" for k in shots], "mean 2–4", "MMR → best captured"]
    return table(header, body)


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextmanager
def recorded(name: str, write: bool) -> Iterator[None]:
    """Print as usual; with `write`, publish what was printed as block NAME (verbatim, under the machine line)."""
    captured = io.StringIO()
    with redirect_stdout(_Tee(sys.stdout, captured)):  # type: ignore[arg-type]
        yield
    if write:
        publish(name, f"{machine()}:\n\n```text\n{captured.getvalue().rstrip()}\n```")
