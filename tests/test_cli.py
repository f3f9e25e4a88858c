"""The `leverplus` command line: help, exit codes, one-line errors, and the data/eval commands end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leverplus.cli import main
from tests.conftest import S3_SECRET_KEY


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leverplus", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_lists_commands_and_every_command_has_help() -> None:
    out = _run("--help")
    assert out.returncode == 0
    for command in ("config", "data", "eval-score"):
        assert command in out.stdout
    for args in (["config", "show"], ["data", "synth"], ["data", "validate"], ["eval-score"]):
        assert _run(*args, "--help").returncode == 0


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from leverplus.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'boto3', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_usage_errors_exit_2() -> None:
    assert _run("no-such-command").returncode == 2
    assert _run("data", "synth").returncode == 2  # --out missing


def test_bad_configuration_is_one_line_exit_2() -> None:
    out = _run("config", "show", env={"LEVERPLUS_POOL__SIZE": "-5"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pool.size" in lines[0] and lines[0].startswith("leverplus: error:")


def test_config_show_masks_secrets_and_applies_set(capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["LEVERPLUS_STORE__SECRET_ACCESS_KEY"] = S3_SECRET_KEY
    try:
        assert main(["config", "show", "--set", "rl.train_shots=3", "--set", "eval.shots=[1, 2]"]) == 0
    finally:
        del os.environ["LEVERPLUS_STORE__SECRET_ACCESS_KEY"]
    out = capsys.readouterr().out
    assert S3_SECRET_KEY not in out and "secret_access_key: '***'" in out
    assert "train_shots: 3" in out and "- 1\n  - 2\n" in out


def test_synth_validate_and_score_on_a_local_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "world"
    assert main(["data", "synth", "--out", str(root), "--seed", "3", "--train", "30", "--val", "12"]) == 0
    assert main(["data", "validate", "--root", root.as_uri(), "--check-images", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["splits"]["train"]["questions"] == 30 and report["splits"]["val"]["questions"] == 12
    assert sum(report["splits"]["val"]["per_answer_type"].values()) == 12

    annotations = json.loads((root / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    results = [{"question_id": a["question_id"], "answer": a["multiple_choice_answer"]} for a in annotations]
    results[0]["answer"] = "definitely wrong"
    (tmp_path / "res.json").write_text(json.dumps(results))
    args = [
        "eval-score",
        "--questions",
        str(root / "v2_OpenEnded_mscoco_val2014_questions.json"),
        "--annotations",
        str(root / "v2_mscoco_val2014_annotations.json"),
        "--results",
        str(tmp_path / "res.json"),
    ]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"overall", "perAnswerType", "perQuestion"}
    assert scores["perQuestion"][str(results[0]["question_id"])] == 0.0
    assert len(scores["perQuestion"]) == 12 and 80 < scores["overall"] < 100

    results.append({"question_id": 42, "answer": "x"})
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert main(args) == 2
    assert "question_id(s) not in the annotations" in capsys.readouterr().err


def test_synth_and_validate_on_s3(s3_env, capsys: pytest.CaptureFixture[str]) -> None:
    root = f"s3://{s3_env.new_bucket()}/datasets/synthetic"
    assert main(["data", "synth", "--out", root, "--train", "15", "--val", "6"]) == 0
    assert main(["data", "validate", "--root", root, "--check-images"]) == 0
    captured = capsys.readouterr()
    assert f"{root}: valid (images checked)" in captured.out
    assert "train" in captured.out and S3_SECRET_KEY not in captured.out + captured.err


def test_validate_reports_malformed_data_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "w"
    assert _run("data", "synth", "--out", str(root), "--train", "0", "--val", "3").returncode == 0
    ann = root / "v2_mscoco_val2014_annotations.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][1]["answers"] = doc["annotations"][1]["answers"][:7]
    ann.write_text(json.dumps(doc))
    out = _run("data", "validate", "--root", str(root), "--split", "val")
    assert out.returncode == 2
    qid = doc["annotations"][1]["question_id"]
    assert out.stderr.strip() == (f"leverplus: error: {ann.as_uri()}: question_id {qid}: expected 10 answers, got 7")


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--run-id", "../../x"),
        ("--run-id", "/abs/path"),
        ("--round-id", "a b"),
        ("--run-id", "é"),
        ("--run-id", "x" * 300),
    ],
)
def test_bad_run_and_round_ids_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, value: str
) -> None:
    """Issue 12 D7: ids are checked at the CLI boundary; nothing (logs, settings, store, world) is written first."""
    assert main(["run", "balanced-v3", flag, value, "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "invalid" in err[-1] and len(err[-1]) < 600
    assert not (tmp_path / "logs").exists() and not (tmp_path / "leverplus-store").exists()
    assert not list(tmp_path.parent.glob("x")) and not Path("/abs/path").exists()


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_settings_must_be_finite(value: str) -> None:
    """Issue 22 item 11: an infinite learning rate trained an all-NaN checkpoint that passed verify."""
    out = _run("config", "show", "--set", f"rl.rce_lr={value}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "rl.rce_lr" in out.stderr and "finite number" in out.stderr


def test_a_stage_refused_for_a_settings_conflict_leaves_the_recorded_settings(tmp_path: Path) -> None:
    """Issue 22 item 9: settings/<stage>.yaml says what ran, never what was refused."""
    from leverplus.data.synth import synthesize
    from leverplus.store import open_store

    root = tmp_path / "store"
    synthesize(open_store(str(root / "datasets" / "synthetic")), 0, {"train": 120, "val": 20})
    common = ["--set", f"store.uri={root}", "--set", "data.name=synthetic", "--set", "features.encoder=simple"]
    assert main(["features", *common]) == 0
    plan = ["plan", "--kind", "rl", "--round", "r1", *common, "--set", "pool.size=8"]
    assert main(plan) == 0
    recorded = (root / "rounds/r1/settings/plan.yaml").read_bytes()
    assert b"size: 8" in recorded
    assert main([*plan, "--set", "rl.hard_threshold=0.3"]) == 2  # the plan exists under other settings
    assert (root / "rounds/r1/settings/plan.yaml").read_bytes() == recorded
