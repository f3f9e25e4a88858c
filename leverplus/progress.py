"""Progress for long work: a tqdm bar on a terminal, a structured log line every 10 % in pods."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from leverplus.log import get_logger

__all__ = ["progress"]


@contextmanager
def progress(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """Yields update(n): call it as units of work complete."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=what, unit="", dynamic_ncols=True, leave=False) as bar:
            yield bar.update
        return
    log = get_logger()
    state = {"done": 0, "next": max(1, total // 10)}
    start = time.monotonic()

    def update(n: int) -> None:
        state["done"] += n
        if state["done"] >= state["next"] or state["done"] == total:
            state["next"] = state["done"] + max(1, total // 10)
            elapsed = time.monotonic() - start
            log.info("progress", what=what, done=state["done"], total=total, elapsed_s=round(elapsed, 1))

    yield update
