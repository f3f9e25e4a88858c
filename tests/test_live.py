"""The live view of `leverplus run` reads each step's progress back from its log (the end-to-end view on a real
terminal is checked in tests/test_pipeline.py)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from rich.console import Console

from leverplus.live import LiveMonitor, describe


def _screen(monitor: LiveMonitor) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(monitor._table())
    return out.getvalue()


def test_the_newest_progress_a_step_logs_shows_on_its_line_and_fan_outs_count_their_shards(tmp_path: Path) -> None:
    log = tmp_path / "score-0.log"
    log.write_text('{"event": "progress", "what": "scoring shard 0", "done": 10, "total": 300}\n')  # an earlier try
    monitor = LiveMonitor("balanced-v3", ["plan", "score", "grpo"], console=Console(file=io.StringIO()))
    try:
        monitor.step("plan", "running")
        monitor.step("plan", "done", 0.4)
        monitor.step("score", "running")
        monitor.fan_out("score", 2)
        monitor.item("score", log, "running")
        event = {"event": "progress", "what": "scoring shard 0", "done": 1200, "total": 3000, "elapsed_s": 10.0}
        with open(log, "a") as f:
            f.write("not json: a warning a library printed\n")
            f.write(json.dumps({**event, "unit": "candidates"}) + "\n")
            f.write('{"event": "progress", "what": "half a li')  # being written: not read yet
        deadline = time.monotonic() + 5
        while "1,200/3,000" not in _screen(monitor) and time.monotonic() < deadline:
            time.sleep(0.05)
        screen = _screen(monitor)
        assert "scoring shard 0 1,200/3,000 candidates, 120/s" in screen and "0/2" in screen
        assert "10/300" not in screen  # what the log held before this process started is not its progress
        monitor.item("score", log, "done")
        assert "1/2" in _screen(monitor)
        monitor.step("score", "failed", 3.0)
        lines = [line.strip() for line in _screen(monitor).splitlines()]
        assert any(line.startswith("✓") and "plan" in line and "0.4 s" in line for line in lines)
        assert any(line.startswith("✗") and "score" in line for line in lines)
        assert any(line.startswith("·") and "grpo" in line for line in lines)
    finally:
        monitor.close()


def test_training_progress_reads_as_epochs_and_loss() -> None:
    event = {"what": "grpo seed 1", "done": 12, "total": 30, "elapsed_s": 4.0, "unit": "epochs", "loss": 0.031234}
    assert describe(event) == "grpo seed 1 epoch 12/30, loss 0.03123"
