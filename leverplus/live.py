"""What `leverplus run` shows while it works.

On a terminal: a live table, one line per step of the pipeline — its status, shard i/n for a fan-out, elapsed time,
and the newest progress its process reported (candidates/s while scoring, epoch i/n and the loss while training).
Steps are child processes that log JSON to their log files (leverplus/progress.py), so the view reads those events
back from the logs; it never changes what a step does. Off a terminal (a pod, CI, a pipe): one structured event per
step start and finish, with its duration.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leverplus.log import get_logger
from leverplus.progress import PROGRESS_EVENT

__all__ = ["LiveMonitor", "LogMonitor", "StepMonitor", "describe"]


class StepMonitor:
    """Told by the local runner what its steps are doing. The base class shows nothing."""

    def step(self, name: str, status: str, seconds: float | None = None) -> None:
        """status: running | done | skipped | failed."""

    def fan_out(self, name: str, items: int) -> None:
        """A fan-out step is about to run `items` processes."""

    def item(self, name: str, log_path: Path, status: str) -> None:
        """One process of a step started (`running`) or ended (`done`); its log is at log_path."""

    def close(self) -> None:
        """The pipeline ended (or failed)."""


class LogMonitor(StepMonitor):
    """Off a terminal: a structured event per step start and finish."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline, self.log = pipeline, get_logger()

    def step(self, name: str, status: str, seconds: float | None = None) -> None:
        timing = {} if seconds is None else {"seconds": round(seconds, 1)}
        self.log.info(f"{self.pipeline}: {name} {status}", pipeline=self.pipeline, step=name, status=status, **timing)


def describe(event: dict[str, Any]) -> str:
    """A progress event as a person reads it: 'scoring shard 0 1,200/3,000 candidates, 85/s' or 'grpo seed 1 epoch
    12/30, loss 0.031'."""
    done, total, elapsed = event.get("done", 0), event.get("total", 0), event.get("elapsed_s", 0.0)
    unit = event.get("unit", "")
    if unit == "epochs":
        text = f"{event.get('what', '')} epoch {done}/{total}"
        return text + (f", loss {event['loss']:.4g}" if "loss" in event else "")
    text = f"{event.get('what', '')} {done:,}/{total:,}" + (f" {unit}" if unit else "")
    return text + (f", {done / elapsed:,.0f}/s" if elapsed and done else "")


@dataclass
class _Row:
    status: str = "waiting"
    started: float | None = None
    seconds: float | None = None
    items: int = 0
    items_done: int = 0
    logs: dict[Path, int] = field(default_factory=dict)  # running processes' logs -> bytes read so far
    detail: str = ""


class LiveMonitor(StepMonitor):
    """On a terminal: a rich live table, refreshed from the steps' logs a few times a second."""

    def __init__(self, pipeline: str, steps: list[str], console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.pipeline, self.rows = pipeline, {s: _Row() for s in steps}
        self.lock = threading.Lock()
        console = console or Console(stderr=True)
        self.live = Live(self._table(), console=console, refresh_per_second=4, redirect_stderr=True)
        self.live.start()
        self.stop = threading.Event()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def step(self, name: str, status: str, seconds: float | None = None) -> None:
        with self.lock:
            row = self.rows.setdefault(name, _Row())
            row.status, row.seconds = status, seconds
            if status == "running":
                row.started = time.monotonic()
            if status in ("done", "skipped"):
                row.logs.clear()
                row.detail = "" if status == "skipped" else row.detail
        self._refresh()

    def fan_out(self, name: str, items: int) -> None:
        with self.lock:
            self.rows[name].items = items

    def item(self, name: str, log_path: Path, status: str) -> None:
        with self.lock:
            row = self.rows[name]
            if status == "running":
                row.logs[log_path] = log_path.stat().st_size if log_path.exists() else 0
            else:
                self._read(row, log_path)
                row.logs.pop(log_path, None)
                row.items_done += 1
        self._refresh()

    def close(self) -> None:
        self.stop.set()
        self.poller.join(timeout=2)
        self._refresh()
        self.live.stop()

    def _poll(self) -> None:
        while not self.stop.wait(0.25):
            with self.lock:
                for row in self.rows.values():
                    for path in list(row.logs):
                        self._read(row, path)
            self._refresh()

    @staticmethod
    def _read(row: _Row, path: Path) -> None:
        """New complete lines of a step's log; the newest progress event becomes the row's detail."""
        try:
            with open(path, "rb") as f:
                f.seek(row.logs.get(path, 0))
                chunk = f.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        row.logs[path] = row.logs.get(path, 0) + len(complete)
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == PROGRESS_EVENT:
                row.detail = describe(event)

    def _refresh(self) -> None:
        with self.lock:
            table = self._table()
        self.live.update(table)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.pipeline, title_justify="left", box=None, padding=(0, 1), show_header=False)
        marks = {"waiting": "·", "running": "▶", "done": "✓", "skipped": "–", "failed": "✗"}
        styles = {"running": "bold", "done": "green", "skipped": "dim", "failed": "red", "waiting": "dim"}
        now = time.monotonic()
        for name, row in self.rows.items():
            elapsed = row.seconds if row.seconds is not None else (now - row.started if row.started else None)
            shards = f"{row.items_done}/{row.items}" if row.items else ""
            table.add_row(
                marks.get(row.status, "?"),
                name,
                shards,
                f"{elapsed:6.1f} s" if elapsed is not None else "",
                row.detail if row.status == "running" else "",
                style=styles.get(row.status, ""),
            )
        return table


SUMMARY_SYSTEMS = ("policy", "sft", "mmr", "retrieval", "similarity")


def print_summary(metrics: dict[str, Any], report_uri: str) -> None:
    """The end of a run on a terminal: the policy beside the baselines at each shot count (measured accuracy, and
    the simulator's noise-free value where there is one), then where the report is."""
    from rich.console import Console
    from rich.table import Table

    evals, ceilings = metrics.get("eval", {}), metrics.get("ceilings", {})
    shots = sorted({k for system in evals.values() for k in system if k != "0"}, key=int)
    table = Table(title="accuracy % (noise-free)" if ceilings else "accuracy %", title_justify="left")
    table.add_column("system")
    for k in shots:
        table.add_column(f"{k}-shot", justify="right")
    for system in (s for s in SUMMARY_SYSTEMS if s in evals):
        cells = []
        for k in shots:
            measured = evals[system].get(k, {}).get("accuracy")
            free = ceilings.get(k, {}).get("expected_accuracy", {}).get(system)
            cells.append(("" if measured is None else f"{measured:.1f}") + ("" if free is None else f" ({free:.2f})"))
        table.add_row(system, *cells, style="bold" if system == "policy" else "")
    console = Console(stderr=True)
    console.print(table)
    console.print(f"report: {report_uri}")
