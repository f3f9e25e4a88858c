"""Issue 12's new-user items: what a person types after `make run` works, or fails in one line that says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leverplus.cli import main


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}
    return subprocess.run(
        [sys.executable, "-m", "leverplus", *args],
        cwd=cwd,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_misspelt_settings_suggest_the_right_name_and_yaml_errors_have_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--set", "rl.kl_betaa=0.1"]) == 2
    assert "rl.kl_betaa from defaults and env, --set" in capsys.readouterr().err
    assert main(["config", "show", "--set", "rl.kl_betaa=0.1"]) == 2
    assert "(did you mean rl.kl_beta?)" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  kl_beta: 0.1\n  seeds: [1\n")
    assert main(["config", "show", "--config", str(bad)]) == 2
    assert "not valid YAML at line 4, column 1" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_an_error_not_a_silent_full_run(tmp_path: Path, workers: str) -> None:
    proc = _cli(tmp_path, "run", "sft", "--workers", workers)
    assert proc.returncode == 2 and f"--workers {workers}: need at least 1" in proc.stderr
    assert not (tmp_path / "leverplus-store").exists()


def test_verify_of_a_mistyped_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "something.txt").write_text("x")
    assert main(["verify", "--store", str(tmp_path / "reall")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no objects: is the store URI right?" in err


def test_render_elsewhere_never_touches_the_chart(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "workflows", "render", "--out", "rendered")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rendered").is_dir() and not (tmp_path / "charts").exists()


def test_a_mistyped_sft_checkpoint_fails_before_any_work(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "run", "balanced-v3", "--sft-checkpoint", "runs/run-0001/checkpoints/sfft")
    assert proc.returncode == 2
    assert "--sft-checkpoint runs/run-0001/checkpoints/sfft: no policy checkpoint" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "leverplus-store" / "datasets").exists()  # no world synthesised, no features, no plan


def test_a_synthetic_world_grows_and_features_follow(world, tmp_path: Path) -> None:
    from leverplus.data import load_split
    from leverplus.stages.features import run_features
    from leverplus.store import open_store

    data_root = world.root / "datasets" / "synthetic"
    before = load_split(open_store(str(data_root)), "train")
    old = {r.question_id: (r.question, r.answers) for r in before}
    assert main(["data", "synth", "--out", str(data_root), "--add", "60"]) == 0
    after = load_split(open_store(str(data_root)), "train")
    assert len(after) == len(before) + 60
    assert all((r.question, r.answers) == old[r.question_id] for r in after if r.question_id in old)
    run_features(world("features"))
    assert len(world("read").features("train").question_ids) == len(after)  # re-encoded, not skipped


def test_a_growth_killed_half_way_and_typed_again_adds_once(world, monkeypatch, capsys) -> None:
    """Issue 22 item 8: killed between the questions and the annotations file, `--add 60` typed again adds 60."""
    from leverplus.data import load_split
    from leverplus.data.vqav2 import annotations_file
    from leverplus.store import open_store
    from leverplus.store.local import LocalStore

    data_root = world.root / "datasets" / "synthetic"
    before = len(load_split(open_store(str(data_root)), "train"))
    put = LocalStore.put_bytes

    def killed_before_annotations(self: LocalStore, key: str, data: bytes):
        if key == annotations_file("train"):
            raise KeyboardInterrupt
        return put(self, key, data)

    monkeypatch.setattr(LocalStore, "put_bytes", killed_before_annotations)
    assert main(["data", "synth", "--out", str(data_root), "--add", "60"]) == 130
    monkeypatch.setattr(LocalStore, "put_bytes", put)
    assert main(["data", "synth", "--out", str(data_root), "--add", "90"]) == 2  # another growth is refused
    assert "an interrupted --add 60 is unfinished" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(data_root), "--add", "60"]) == 0
    assert len(load_split(open_store(str(data_root)), "train")) == before + 60
    assert not (data_root / "synth-growth.json").exists()
    assert main(["data", "synth", "--out", str(data_root), "--add", "60"]) == 0  # typed after it finished: grows
    assert len(load_split(open_store(str(data_root)), "train")) == before + 120


def test_a_stage_run_by_hand_uses_its_runs_recorded_settings(tmp_path: Path) -> None:
    """`leverplus report --run run-0001` after `make run` found no dataset (the embedded profile was not applied);
    now a hand-run stage takes the run's recorded settings and applies only what is overridden, saying so."""
    from leverplus.config import settings_to_yaml
    from leverplus.launch import RunRequest, resolve_settings

    settings, _ = resolve_settings(RunRequest(pipeline="sft", profile="embedded"), tmp_path)
    store = tmp_path / "leverplus-store"
    (store / "runs/run-0001").mkdir(parents=True)
    (store / "runs/run-0001/settings.yaml").write_text(settings_to_yaml(settings, secrets="omit"))
    proc = _cli(tmp_path, "config", "show")
    assert "encoder: clip" in proc.stdout  # no run named: the defaults
    proc = _cli(tmp_path, "growth-check", "--run", "run-0001", "--set", "rl.retrain_growth=0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "false"  # no balanced set yet
    recorded = (store / "runs/run-0001/settings/growth-check.yaml").read_text()
    assert "encoder: simple" in recorded and "name: synthetic" in recorded and "retrain_growth: 0.5" in recorded
    assert "using the settings recorded with the run" in proc.stderr and "rl.retrain_growth" in proc.stderr


def test_set_keeps_the_embedded_profile(tmp_path: Path) -> None:
    from leverplus.launch import RunRequest, resolve_settings

    settings, scaled = resolve_settings(RunRequest(pipeline="sft", overrides={"rl.retrain_growth": 0.9}), tmp_path)
    assert scaled and settings.data.name == "synthetic" and settings.rl.retrain_growth == 0.9


def test_variables_that_are_not_settings_keep_the_embedded_profile(tmp_path: Path, monkeypatch) -> None:
    """How logs look, how often progress is logged and how steps are started configure nothing."""
    from leverplus.launch import RunRequest, resolve_settings

    for name, value in (("LEVERPLUS_STEP_PROCESS", "fresh"), ("LEVERPLUS_PROGRESS_SECONDS", "5"),
                        ("LEVERPLUS_LOG_FORMAT", "json")):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert resolve_settings(RunRequest(pipeline="sft"), tmp_path)[0].data.name == "synthetic"
    monkeypatch.setenv("LEVERPLUS_POOL__SIZE", "8")  # a setting: the user's own configuration, no profile
    assert resolve_settings(RunRequest(pipeline="sft"), tmp_path)[0].data.name == "vqav2"


def test_a_data_growth_round_that_does_not_retrain_says_why(world) -> None:
    from leverplus.stages.filter import run_filter
    from leverplus.stages.growth import growth_summary, run_growth_check
    from tests.test_stages import _scored_round

    _scored_round(world, "round-1")
    run_filter(world("filter"), "round-1")
    ctx = world("grpo")
    ctx.store.put_bytes("runs/old/checkpoints/grpo/config.json", b'{"data_version": "v1"}')
    assert run_growth_check(world("growth"), "run-g") == "false"
    decision = json.loads((world.root / "runs/run-g/growth-check.json").read_text())
    queries = decision["balanced_queries"]
    assert growth_summary(decision) == (
        f"growth check false: balanced set v1 has {queries} queries; retraining needs {-(-queries * 12 // 10)} "
        f"(1.2 x {queries} of v1, the newest trained policy's data)"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "--round", "../x", "--shard", "0"],
        ["report", "--run", "a b"],
        ["plan", "--kind", "eval", "--run", "/abs"],
        ["growth-check", "--run", "x" * 300],
        ["config", "show", "--set", "data.name=../../elsewhere"],
        ["config", "show", "--set", "run.run_id=é"],
    ],
)
def test_every_id_is_checked_by_one_rule_where_it_enters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid" in err and "letters, digits" in err
    assert list(tmp_path.iterdir()) == []  # nothing written (the tests run in tmp_path)


def test_verify_checks_datasets(world, capsys: pytest.CaptureFixture[str]) -> None:
    questions = world.root / "datasets/synthetic/v2_OpenEnded_mscoco_val2014_questions.json"
    assert main(["verify", "--store", str(world.root)]) == 0
    questions.write_bytes(questions.read_bytes()[:-200])  # truncated: used to give "0 problem(s)"
    assert main(["verify", "--store", str(world.root)]) == 2
    out = capsys.readouterr().out
    assert "PROBLEM dataset synthetic/val:" in out and "1 problem(s)" in out
