"""Issue 12: the same command typed again continues where a killed run stopped.

Unit level here (which run a command continues, training stages idempotent, GRPO resuming from its last epoch);
the end-to-end kill tests through `leverplus run` are in test_kill_resume.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from leverplus.config import load_settings
from leverplus.errors import ConfigError, ConflictError, IntegrityError
from leverplus.launch import RunRequest, choose_run, launch, resolve_settings
from leverplus.policy import PointerSelector, PolicyConfig, save_policy
from leverplus.policy.resume import load_state
from leverplus.run_record import read_record, write_record
from leverplus.stages.filter import run_filter
from leverplus.stages.train import run_grpo, run_rce
from leverplus.stages.verify import run_verify
from leverplus.store import open_store
from tests.test_stages import _scored_round


def _settings(store: Path, **overrides: object):
    return load_settings(overrides={"store.uri": str(store), **overrides})


def test_the_same_command_continues_the_unfinished_run_and_new_needs_new(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    settings = _settings(tmp_path)
    req = RunRequest(pipeline="balanced-v3")
    first, resumed = choose_run(store, req, settings)
    assert (first.run_id, first.round_id, resumed) == ("run-0001", "round-0001", False)
    store.put_bytes("runs/run-0001/settings.yaml", b"{}")
    write_record(store, first)  # started, then killed before planning its round

    again, resumed = choose_run(store, req, settings)
    assert again == first and resumed  # the same command continues it
    other, resumed = choose_run(store, RunRequest(pipeline="balanced-v3", new=True), settings)
    assert (other.run_id, other.round_id, resumed) == ("run-0002", "round-0002", False)  # its round id is claimed
    growth, resumed = choose_run(store, RunRequest(pipeline="data-growth"), settings)
    assert growth.run_id == "run-0002" and not resumed  # another pipeline's unfinished run is not this one's

    write_record(store, first.model_copy(update={"status": "finished"}))
    nxt, resumed = choose_run(store, req, settings)
    assert nxt.run_id == "run-0002" and not resumed  # a finished run is never continued implicitly
    with pytest.raises(ConfigError, match="run run-0001 already exists"):
        choose_run(store, RunRequest(pipeline="balanced-v3", run_id="run-0001", new=True), settings)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"run_id": "../../../escaped"}, "run_id: '../../../escaped' is not an id"),
        ({"pid": 10**30}, "pid: Input should be less than or equal to 4194304"),
        ({"status": 7}, "status: Input should be 'running' or 'finished'"),
        ({"run_id": "run-0009"}, "run_id: 'run-0009', in run-0001/"),
    ],
)
def test_a_damaged_run_record_is_one_line_naming_its_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict, named: str
) -> None:
    """Issue 22 item 6: it never writes outside the log folder, never a traceback; --new and status still work."""
    from leverplus.cli import main

    store = open_store(str(tmp_path / "store"))
    settings = _settings(tmp_path / "store")
    first, _ = choose_run(store, RunRequest(pipeline="balanced-v3"), settings)
    store.put_bytes("runs/run-0001/settings.yaml", b"{}")
    write_record(store, first)
    key = tmp_path / "store/runs/run-0001/run.json"
    key.write_text(json.dumps(json.loads(key.read_text()) | edit))
    with pytest.raises(IntegrityError, match=re.escape(named)):
        choose_run(store, RunRequest(pipeline="balanced-v3"), settings)
    other, resumed = choose_run(store, RunRequest(pipeline="balanced-v3", new=True), settings)
    assert other.run_id == "run-0002" and not resumed
    assert main(["run", "balanced-v3", "--set", f"store.uri={tmp_path / 'store'}"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the info lines of the embedded default
    assert last.startswith("leverplus: error:") and named in last and "add --new" in last
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.rglob("escaped"))
    assert main(["status", "--store", str(tmp_path / "store"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"]["run-0001"]["status"] == "damaged"
    assert main(["verify", "--store", str(tmp_path / "store")]) == 2
    assert "PROBLEM runs/run-0001/run.json: " in capsys.readouterr().out


def test_continuing_with_other_settings_is_one_line_naming_both(tmp_path: Path) -> None:
    from leverplus.config import settings_to_yaml

    store = open_store(str(tmp_path))
    settings = _settings(tmp_path)
    record, _ = choose_run(store, RunRequest(pipeline="data-growth"), settings)
    store.put_bytes("runs/run-0001/settings.yaml", settings_to_yaml(settings, secrets="omit").encode())
    write_record(store, record)
    changed = _settings(tmp_path, **{"rl.retrain_growth": 0.9})
    with pytest.raises(ConfigError) as err:
        choose_run(store, RunRequest(pipeline="data-growth"), changed)
    message = str(err.value)
    assert "\n" not in message and record.settings_hash[:12] in message
    assert "rl.retrain_growth 0.2 -> 0.9" in message and "--new" in message
    with pytest.raises(ConfigError, match="--sft-checkpoint"):
        choose_run(store, RunRequest(pipeline="data-growth", sft_checkpoint="runs/x/checkpoints/sft"), settings)
    fresh, resumed = choose_run(store, RunRequest(pipeline="data-growth", new=True), changed)
    assert fresh.run_id == "run-0002" and not resumed
    assert read_record(store, "run-0001") == record  # the unfinished run is left as it was


def _trained_start(world) -> str:
    """A scored, filtered round and a starting policy saved in the store."""
    import torch

    _scored_round(world, "round-1")
    run_filter(world("filter"), "round-1")
    ctx = world("sft")
    torch.manual_seed(0)
    net = PointerSelector(PolicyConfig(feature_dim=ctx.features("train").dim))
    save_policy(net, ctx.store, "runs/run-r/checkpoints/sft", {"encoder": "simple", "settings_hash": "x"})
    return "runs/run-r/checkpoints/sft"


def test_grpo_killed_mid_training_resumes_from_its_last_epoch_byte_identically(world, monkeypatch) -> None:
    from leverplus.stages import train

    sizes = {"rl.rce_epochs": 1, "rl.grpo_epochs": 4, "rl.grpo_lr": 1e-3}
    init = _trained_start(world)
    run_rce(world("rce", **sizes), "run-r", init)
    rce = "runs/run-r/checkpoints/rce"
    grpo = world.root / "runs/run-r/checkpoints/grpo"
    run_grpo(world("grpo", **sizes), "run-r", rce)
    uninterrupted = {n: (grpo / n).read_bytes() for n in ("model.safetensors", "metrics.jsonl", "config.json")}
    assert not (grpo / "resume.safetensors").exists()  # the finished checkpoint supersedes the epoch state
    before = (grpo / "model.safetensors").stat().st_mtime_ns
    run_grpo(world("grpo", **sizes), "run-r", rce)  # a rerun of a finished stage skips it
    assert (grpo / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ConflictError, match="another settings_hash"):  # never overwritten with other settings
        run_grpo(world("grpo", **{**sizes, "rl.grpo_lr": 2e-3}), "run-r", rce)

    import shutil

    shutil.rmtree(grpo)
    real_save = train.save_state

    def killed_after_epoch_2(store, key, state, guard) -> None:
        real_save(store, key, state, guard)
        if state.epoch == 2:
            raise KeyboardInterrupt  # as if the pod were killed right after epoch 2's state was written

    monkeypatch.setattr(train, "save_state", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(world("grpo", **sizes), "run-r", rce)
    assert (grpo / "resume.safetensors").exists() and not (grpo / "config.json").exists()
    ctx = world("grpo", **sizes)
    state_key = "runs/run-r/checkpoints/grpo/resume.safetensors"
    assert load_state(ctx.store, state_key, train._guard(ctx, rce, "v1")).epoch == 2
    other = world("grpo", **{**sizes, "rl.kl_beta": 0.5})  # a state left by other settings is never resumed
    assert load_state(other.store, state_key, train._guard(other, rce, "v1")) is None
    monkeypatch.setattr(train, "save_state", real_save)
    resumed_epochs = []
    monkeypatch.setattr(train, "train_grpo", _spy(train.train_grpo, resumed_epochs))
    run_grpo(world("grpo", **sizes), "run-r", rce)
    assert resumed_epochs == [2]  # continued after epoch 2, not from zero
    assert {n: (grpo / n).read_bytes() for n in uninterrupted} == uninterrupted

    # Issue 22 item 4: one changed float in the state is found by verify, and the rerun starts the stage over.
    shutil.rmtree(grpo)
    monkeypatch.setattr(train, "save_state", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_grpo(world("grpo", **sizes), "run-r", rce)
    monkeypatch.setattr(train, "save_state", real_save)
    state = bytearray((grpo / "resume.safetensors").read_bytes())
    state[-5] ^= 0x40  # a bit of the last tensor
    (grpo / "resume.safetensors").write_bytes(bytes(state))
    assert any("resume.safetensors: sha256 differs from its contents" in p for p in run_verify(world("verify"))[1])
    resumed_epochs.clear()
    run_grpo(world("grpo", **sizes), "run-r", rce)
    assert resumed_epochs == [0]
    assert {n: (grpo / n).read_bytes() for n in uninterrupted} == uninterrupted


def _spy(fn, seen: list):
    def wrapper(*args, **kwargs):
        seen.append(kwargs["resume"].epoch if kwargs.get("resume") else 0)
        return fn(*args, **kwargs)

    return wrapper


def test_a_run_a_live_runner_is_executing_is_not_executed_twice(tmp_path: Path) -> None:
    """The same command in a second terminal: refused while the first runner lives, continued once it is gone."""
    import os
    import socket
    import subprocess
    import sys

    store = open_store(str(tmp_path / "leverplus-store"))
    settings, _ = resolve_settings(RunRequest(pipeline="sft", profile="embedded"), tmp_path)
    record, _ = choose_run(store, RunRequest(pipeline="sft", profile="embedded"), settings)
    store.put_bytes("runs/run-0001/settings.yaml", b"{}")
    write_record(store, record.model_copy(update={"host": socket.gethostname(), "pid": os.getpid()}))  # alive
    request = RunRequest(pipeline="sft", profile="embedded", log_dir=str(tmp_path / "logs"))
    with pytest.raises(ConflictError, match=f"run run-0001 .* is being executed by pid {os.getpid()} on this host"):
        launch(request)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_record(store, record.model_copy(update={"host": socket.gethostname(), "pid": dead.pid}))
    assert choose_run(store, request, settings) == (read_record(store, "run-0001"), True)  # gone: continued


@pytest.mark.parametrize("stage", ["sft", "rce"])
def test_sft_and_rce_killed_mid_training_resume_byte_identically(world, monkeypatch, stage: str) -> None:
    import shutil

    from leverplus.stages import train
    from leverplus.stages.plan import run_plan, sft_plan_key
    from leverplus.stages.sft_data import run_sft_data

    sizes = {"rl.rce_epochs": 4, "sft.epochs": 4}
    if stage == "sft":
        plan = run_plan(world("plan"), "sft", sft_plan_key("run-r"), "run-r")
        for shard in plan.shard_ids():
            run_sft_data(world("sft-data"), "run-r", shard)
        run = lambda: train.run_sft(world("sft", **sizes), "run-r")  # noqa: E731
    else:
        init = _trained_start(world)
        run = lambda: train.run_rce(world("rce", **sizes), "run-r", init)  # noqa: E731
    out = world.root / f"runs/run-r/checkpoints/{stage}"
    run()
    uninterrupted = {n: (out / n).read_bytes() for n in ("model.safetensors", "metrics.jsonl", "config.json")}
    shutil.rmtree(out)
    real_save = train.save_state

    def killed_after_epoch_3(store, key, state, guard) -> None:
        real_save(store, key, state, guard)
        if state.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_state", killed_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert (out / "resume.safetensors").exists() and not (out / "config.json").exists()
    monkeypatch.setattr(train, "save_state", real_save)
    loop = {"sft": "train_sft", "rce": "train_rce"}[stage]
    resumed_epochs: list[int] = []
    monkeypatch.setattr(train, loop, _spy(getattr(train, loop), resumed_epochs))
    run()
    assert resumed_epochs == [3] and not (out / "resume.safetensors").exists()
    assert {n: (out / n).read_bytes() for n in uninterrupted} == uninterrupted
