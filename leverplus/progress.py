"""Progress for long work: a tqdm bar when a person watches this process, structured `progress` events otherwise.

A pod's events are its progress in the cluster's logs; under `leverplus run` every step is a child process whose
events the runner's live view reads back from the step's log (leverplus/live.py). Events come at every tenth of the
work and at most every LEVERPLUS_PROGRESS_SECONDS (default 60 s; the local runner asks for 1 s).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from leverplus.log import get_logger

__all__ = ["PROGRESS_EVENT", "progress", "progress_event"]

PROGRESS_EVENT = "progress"


def _interval() -> float:
    try:
        return max(0.1, float(os.environ.get("LEVERPLUS_PROGRESS_SECONDS", "60")))
    except ValueError:
        return 60.0


def progress_event(what: str, done: int, total: int, elapsed: float, **extra: Any) -> None:
    """One structured progress event (the runner's live view and a pod's log both read these)."""
    get_logger().info(PROGRESS_EVENT, what=what, done=done, total=total, elapsed_s=round(elapsed, 1), **extra)


@contextmanager
def progress(total: int, what: str, unit: str = "") -> Iterator[Callable[[int], None]]:
    """Yields update(n): call it as units of work complete."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=what, unit=unit, dynamic_ncols=True, leave=False) as bar:
            yield bar.update
        return
    state = {"done": 0, "next": max(1, total // 10), "last": time.monotonic()}
    start, interval = time.monotonic(), _interval()

    def update(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        if state["done"] >= state["next"] or state["done"] == total or now - state["last"] >= interval:
            state["next"] = state["done"] + max(1, total // 10)
            state["last"] = now
            progress_event(what, state["done"], total, now - start, **({"unit": unit} if unit else {}))

    yield update
