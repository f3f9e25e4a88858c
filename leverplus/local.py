"""Run a pipeline DAG on one machine. Every step is invoked exactly as a pod would invoke it — the same
`leverplus <stage> ...` command line in a process of its own (forked from a server that imported torch once:
leverplus/steps.py) — and fan-out items run on a pool of `workers` processes.
Each step's log goes to <log_dir>/<step>[-<item>].log; a failing step stops the run with its last log lines."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from leverplus.cpus import THREAD_VARIABLES, available_cpus
from leverplus.errors import LeverPlusError
from leverplus.live import StepMonitor
from leverplus.pipeline import Pipeline, Step
from leverplus.steps import run_step

__all__ = ["LocalRunner", "StepFailed"]


class StepFailed(LeverPlusError):
    """A pipeline step exited non-zero."""


@dataclass
class LocalRunner:
    config_file: Path  # the resolved settings every step reads (LEVERPLUS_CONFIG)
    log_dir: Path
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)  # added to every step's environment (credentials)
    monitor: StepMonitor = field(default_factory=StepMonitor)  # what the person or the log is shown
    outputs: dict[str, str] = field(default_factory=dict)  # step -> what it printed (stdout, stripped)
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time (a fan-out: all its items)

    def _env(self, parallel: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LEVERPLUS_CONFIG"}
        env["LEVERPLUS_CONFIG"] = str(self.config_file)
        env.update(self.env)
        env.setdefault("LEVERPLUS_LOG_FORMAT", "json")
        env.setdefault("LEVERPLUS_PROGRESS_SECONDS", "1")  # the live view reads progress back from the logs
        # Parallel processes share the CPUs this runner may use (or the threads the user gave it): without a cap
        # each torch process starts one thread per core.
        share = max(1, int(os.environ.get("OMP_NUM_THREADS") or available_cpus()) // max(1, parallel))
        env |= {name: str(share) for name in THREAD_VARIABLES}
        return env

    def _invoke(self, args: list[str], step: str, label: str, parallel: int = 1) -> str:
        log_path = self.log_dir / f"{label}.log"  # a continued run appends: the killed attempt's log stays
        self.monitor.item(step, log_path, "running")
        code, printed = run_step(args, self._env(parallel), log_path)
        if code != 0:
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise StepFailed(
                f"step {label} failed (exit {code}): `leverplus {' '.join(args)}`; log {log_path}: {' | '.join(tail)}"
            )
        self.monitor.item(step, log_path, "done")
        return printed.strip()

    def _items(self, source: str) -> list[str]:
        printed = self.outputs[source].splitlines()[-1] if self.outputs.get(source) else "[]"
        items = json.loads(printed)
        if not isinstance(items, list):
            raise StepFailed(f"step {source} printed {printed[:80]!r}, not a JSON list of shard ids")
        return [str(i) for i in items]

    def _fan_out(self, step: Step, params: dict[str, str]) -> str:
        """One process per item, `workers` at a time; what they print, in item order."""
        items = self._items(step.fan_out or "")
        parallel = max(1, min(self.workers, len(items)))
        self.monitor.fan_out(step.name, len(items))
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [
                pool.submit(self._invoke, step.render(params, item), step.name, f"{step.name}-{item}", parallel)
                for item in items
            ]
            return "\n".join(f.result() for f in futures)

    def run(self, pipeline: Pipeline, params: dict[str, str]) -> dict[str, str]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for step in pipeline.order():
                self._run_step(pipeline, step, params)
        finally:
            self.monitor.close()
        (self.log_dir / "timings.json").write_text(json.dumps(self.seconds, indent=2) + "\n")
        return self.outputs

    def _run_step(self, pipeline: Pipeline, step: Step, params: dict[str, str]) -> None:
        if step.when and self.outputs.get(step.when[0], "").splitlines()[-1:] != [step.when[1]]:
            self.monitor.step(step.name, "skipped")
            self.outputs[step.name] = ""
            return
        self.monitor.step(step.name, "running")
        start = time.monotonic()
        try:
            if step.fan_out:
                self.outputs[step.name] = self._fan_out(step, params)
            else:
                self.outputs[step.name] = self._invoke(step.render(params), step.name, step.name)
        except BaseException:
            self.monitor.step(step.name, "failed", time.monotonic() - start)
            raise
        seconds = time.monotonic() - start
        self.seconds[f"{pipeline.name}/{step.name}"] = round(seconds, 2)
        self.monitor.step(step.name, "done", seconds)
