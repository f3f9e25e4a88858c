"""Issue 12's acceptance test: `leverplus run` killed with SIGKILL (the runner and every step process it started)
in every stage, then the same command typed again with no ids, ends with every tensor and JSON-lines object, the
balanced set and metrics.json of an uninterrupted run, byte for byte; a data-growth run killed during evaluation
evaluates its trained policy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_pipeline import TINY

# (what the runner logs when the stage starts, seconds after): spread over every stage of balanced-v3, the world
# synthesis and the SFT pipeline it runs first included; about half the stage's time on an idle 2-core machine
# (features 1.9 s, sft 2.1 s, score 0.8 s, rce and grpo 1.5 s each, eval 0.9 s, report 1.7 s). A step that only
# starts a process (~0.1 s: plans, filter, sft-data) may be over within its 0.05 s: then the kill lands in the next.
KILL_POINTS = [
    ("synthesising the world", 0.3),
    ("sft: features running", 0.9),
    ("sft: sft-data running", 0.05),
    ("sft: sft running", 1.0),
    ("balanced-v3: plan running", 0.05),
    ("balanced-v3: score running", 0.4),
    ("balanced-v3: filter running", 0.05),
    ("balanced-v3: rce running", 0.7),
    ("balanced-v3: grpo running", 0.7),
    ("balanced-v3: eval running", 0.45),
    ("balanced-v3: report running", 0.8),
]


def _command(pipeline: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "leverplus", "run", pipeline, "--profile", "embedded", "--config", "tiny.yaml",
            "--workers", "2", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    return env | {"LEVERPLUS_LOG_FORMAT": "json"}


def _finish(workdir: Path, pipeline: str, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        _command(pipeline, *extra), cwd=workdir, env=_env(), capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _kill_during(workdir: Path, pipeline: str, *extra: str, wanted: str, after: float) -> None:
    """Start the command, wait until the runner logs `wanted`, let it work for `after` seconds, then SIGKILL the
    whole process group: the runner and the step processes, as a node loss would."""
    proc = subprocess.Popen(
        _command(pipeline, *extra),
        cwd=workdir,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if wanted in line:
            time.sleep(after)
            break
    else:
        proc.wait()
        pytest.fail(f"the run ended (exit {proc.returncode}) before {wanted!r}")
    assert proc.poll() is None, f"the run ended within {after} s of {wanted!r}: not a kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _artifacts(store: Path) -> dict[str, bytes]:
    """Every tensor file and JSON-lines object (what the steps computed), and the published set's and the round's
    manifests, the latest pointer and the report's metrics (which name their inputs by URI: the two stores differ
    only in where they are)."""
    computed = [p for p in sorted(store.rglob("*")) if p.suffix in (".safetensors", ".jsonl")]
    names = [p.relative_to(store).as_posix() for p in computed]
    names += [
        "rl-data/balanced/v1.manifest.json",
        "rl-data/balanced/latest",
        "rounds/round-0001/manifest.json",
        "runs/run-0001/report/metrics.json",
    ]
    return {name: (store / name).read_bytes().replace(str(store).encode(), b"<store>") for name in names}


@pytest.mark.slow
def test_balanced_v3_killed_in_every_stage_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for workdir in (clean, killed):
        workdir.mkdir()
        (workdir / "tiny.yaml").write_text(TINY)
    with ThreadPoolExecutor(1) as background:  # the uninterrupted run goes on meanwhile, in its own directory
        uninterrupted = background.submit(_finish, clean, "balanced-v3")
        for wanted, after in KILL_POINTS:
            _kill_during(killed, "balanced-v3", wanted=wanted, after=after)
        last = _finish(killed, "balanced-v3")
        uninterrupted.result()
    assert "continuing an unfinished run" in last.stderr

    store = killed / "leverplus-store"
    assert sorted(p.name for p in (store / "runs").iterdir()) == ["run-0001"]  # no run-0002 from the reruns
    assert sorted(p.name for p in (store / "rounds").iterdir()) == ["round-0001"]
    resumed, uninterrupted = _artifacts(store), _artifacts(clean / "leverplus-store")
    assert len(resumed) > 30 and "runs/run-0001/checkpoints/seed-2/grpo/model.safetensors" in resumed
    assert [k for k in resumed if resumed[k] != uninterrupted.get(k)] == [] and resumed.keys() == uninterrupted.keys()
    record = json.loads((store / "runs/run-0001/run.json").read_text())
    assert record["status"] == "finished"
    from leverplus.cli import main

    assert main(["verify", "--store", str(store)]) == 0

    # The next command starts a new run (the first one finished); a changed setting with an unfinished run is
    # refused in one line naming both settings hashes.
    _kill_during(killed, "data-growth", "--sft-checkpoint", "runs/run-0001/checkpoints/sft",
                 wanted="data-growth: plan running", after=0.5)  # fmt: skip
    refused = subprocess.run(
        _command("data-growth", "--sft-checkpoint", "runs/run-0001/checkpoints/sft", "--set", "rl.retrain_growth=0.9"),
        cwd=killed,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    error = refused.stderr.strip().splitlines()[-1]
    assert "run run-0002 (data-growth, running)" in error and "rl.retrain_growth 0.2 -> 0.9" in error


@pytest.mark.slow
def test_data_growth_killed_during_eval_evaluates_its_trained_policy(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    _kill_during(tmp_path, "data-growth", wanted="data-growth: eval running", after=0.45)
    done = _finish(tmp_path, "data-growth")
    assert done.stdout.strip().endswith("runs/run-0001/report/report.md")
    store = tmp_path / "leverplus-store"
    assert json.loads((store / "runs/run-0001/growth-check.json").read_text())["decision"] == "true"
    metrics = json.loads((store / "runs/run-0001/report/metrics.json").read_text())
    assert metrics["eval"]["policy"]["1"]["n"] == 120
