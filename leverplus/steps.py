"""Start a pipeline step in a process of its own, as a pod would, without paying for Python's and torch's imports
each time: a fork server (one per runner, started on first use) imports torch and the stages once, and forks a
child per step. The child takes the step's environment and output files, sizes torch's threads from that
environment, and runs `leverplus <stage> ...` through the same `main` as the command line; its exit code is the
step's. LEVERPLUS_STEP_PROCESS=fresh starts `python -m leverplus` instead (a new interpreter per step), which is
the default off Linux.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

__all__ = ["run_step", "warm_up"]

STEP_PROCESS_ENV = "LEVERPLUS_STEP_PROCESS"
# What every step imports anyway; transformers is left out: it reads HF_* variables when it loads.
PRELOAD = ["numpy", "torch", "leverplus.cli", "leverplus.stages.features", "leverplus.stages.score",
           "leverplus.stages.sft_data", "leverplus.stages.train", "leverplus.stages.evaluate"]  # fmt: skip
_context: Any = None
# A forked process's exit status is one message on a pipe, read by whoever polls first; Process.start() polls every
# earlier process (multiprocessing's _cleanup). Two threads reading it at once leave one with nothing, and an exit
# code of 255: starts and status reads take turns (waiting for a step to end does not).
_STATUS = threading.Lock()


def run_step(argv: list[str], env: dict[str, str], log: Path, timeout: float | None = None) -> tuple[int, str]:
    """Run `leverplus <argv>` with exactly `env`, stderr appended to `log`; killed after `timeout` seconds.
    -> (exit code, negative when killed by that signal; what it printed on stdout)"""
    with tempfile.TemporaryDirectory(prefix="leverplus-step-") as tmp:
        out = Path(tmp) / "stdout"
        code = _fresh(argv, env, log, out, timeout) if _how(env) == "fresh" else _forked(argv, env, log, out, timeout)
        return code, out.read_text() if out.exists() else ""


def warm_up() -> None:
    """Start the fork server now, in the background, when steps will be forked: its imports (torch, ~2 s) overlap
    with what the runner does before its first step (choosing the run, synthesising a world)."""
    if _how({}) == "forked":
        threading.Thread(target=_start_fork_server, name="fork-server", daemon=True).start()


def _start_fork_server() -> None:
    from multiprocessing import forkserver

    try:
        _fork_server()
        forkserver.ensure_running()  # the first step's start() waits on the same lock if this is still importing
    except Exception:  # an early start only saves time: the first step starts the server and reports why not
        return


def _fresh(argv: list[str], env: dict[str, str], log: Path, out: Path, timeout: float | None) -> int:
    with open(log, "a") as err, open(out, "w") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "leverplus", *argv], stdout=stdout, stderr=err, env=env)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def _forked(argv: list[str], env: dict[str, str], log: Path, out: Path, timeout: float | None) -> int:
    child = _fork_server().Process(target=_child, args=(argv, env, str(log), str(out)), daemon=False)
    with _STATUS:
        child.start()
    if not wait([child.sentinel], timeout):  # still running at its timeout
        child.kill()
        wait([child.sentinel])
    with _STATUS:
        child.join()
    return child.exitcode if child.exitcode is not None else 1


def _how(env: dict[str, str]) -> str:
    """LEVERPLUS_STEP_PROCESS, else forked on Linux. macOS forks badly once system frameworks are loaded (its
    Python starts processes with spawn by default), so there every step starts a new interpreter."""
    chosen = env.get(STEP_PROCESS_ENV) or os.environ.get(STEP_PROCESS_ENV)
    return chosen or ("forked" if sys.platform.startswith("linux") else "fresh")


def _fork_server() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(argv: list[str], env: dict[str, str], log: str, out: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    import torch  # imported by the fork server with its own environment: take this step's thread count

    from leverplus.cpus import THREAD_VARIABLES, available_cpus

    torch.set_num_threads(int(env.get(THREAD_VARIABLES[0]) or available_cpus()))
    from leverplus.cli import main

    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)  # multiprocessing makes it the process's exit code
