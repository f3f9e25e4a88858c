"""The pipeline DAGs and `leverplus run` end to end through the real CLI, in fresh processes as a pod would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from leverplus.cli import build_parser
from leverplus.pipeline import PIPELINES
from leverplus.report.science import HEURISTICS

TINY = """\
data: {synth_train: 600, synth_val: 120}
pool: {size: 16}
rl: {target_new_queries: 30, prior_acceptance_rate: 0.25, shard_size: 60, rce_epochs: 2, grpo_epochs: 2}
sft: {anchors: 60, candidates: 8, epochs: 10, lr: 0.001}
eval: {num_questions: 120, shots: [1, 2], bootstrap_samples: 200}
"""  # every size shrunk so one run takes ~35 s on 2 cores; SFT lr raised to make up for ~50 steps


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_step_is_a_valid_command_line(name: str) -> None:
    pipeline = PIPELINES[name]
    params = {"run_id": "run-1", "round_id": "round-1", "sft_checkpoint": "runs/run-0/checkpoints/sft"}
    parser = build_parser()
    for step in pipeline.order():
        args = parser.parse_args(step.render(params, item="0"))
        assert args.command == step.args[0]
        if step.fan_out:
            assert pipeline.step(step.fan_out).emits_items, f"{step.name} fans out over a step that emits no list"


def test_dags_have_the_documented_shape() -> None:
    order = lambda name: [s.name for s in PIPELINES[name].order()]  # noqa: E731
    assert order("balanced-v3") == ["features", "plan", "score", "filter", "rce", "grpo", "eval-plan", "eval", "report"]
    assert order("sft") == ["features", "sft-plan", "sft-data", "sft"]
    growth = PIPELINES["data-growth"]
    assert [s.name for s in growth.order()][:5] == ["features", "plan", "score", "filter", "growth-check"]
    assert all(s.when == ("growth-check", "true") for s in growth.steps if s.name in ("rce", "grpo", "eval", "report"))


def _run(workdir: Path, *args: str, config: str = "tiny.yaml", terminal: bool = False) -> tuple[dict, str]:
    """`leverplus run` in a fresh process: its summary and what it wrote on stderr — a pseudo-terminal's screen
    when `terminal`, as a person at a terminal sees it, else its log lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")} | {"COLUMNS": "160"}
    argv = [sys.executable, "-m", "leverplus", "run", *args, "--profile", "embedded", "--config", config]
    argv += ["--workers", "2", "--summary-json", "summary.json"]
    if terminal:
        returncode, stdout, stderr = _on_a_terminal(argv, workdir, env)
    else:
        proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert returncode == 0, stderr[-3000:]
    assert stdout.strip().endswith("report.md")
    return json.loads((workdir / "summary.json").read_text()), stderr


def _redo_in_new_interpreters(workdir: Path, store: Path) -> None:
    """A step forked from the runner's fork server (leverplus/steps.py) computes what a new interpreter computes:
    GRPO (three seeds, sampled KL estimates, per-epoch checkpoints) and an evaluation shard, redone each as a new
    `python -m leverplus` with the environment the runner gives it, write the same bytes. (The benchmark
    embedded_default.py compares whole runs made each way.)"""
    import shutil

    from leverplus.local import LocalRunner
    from leverplus.steps import run_step

    (config,) = workdir.glob("leverplus-logs/*/run-0001/settings.yaml")
    runner = LocalRunner(config, workdir / "redo-logs")
    params = {"run_id": "run-0001", "round_id": "round-0001", "sft_checkpoint": "runs/run-0001/checkpoints/sft"}
    pipeline = PIPELINES["balanced-v3"]
    redo = {
        "grpo": (pipeline.step("grpo").render(params), 1, ["grpo", "seed-1/grpo", "seed-2/grpo"]),
        "eval": (pipeline.step("eval").render(params, item="0"), 2, ["00000.jsonl", "00000.manifest.json"]),
    }
    for label, (argv, parallel, outputs) in redo.items():
        where = store / "runs/run-0001" / ("checkpoints" if label == "grpo" else "eval/shards")
        aside = workdir / "forked" / label
        for rel in outputs:
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(where / rel, aside / rel)
        # What the step computed: tensors and JSON-lines (configs and manifests name the store's path and times).
        forked = {
            p.relative_to(aside): p.read_bytes() for p in aside.rglob("*") if p.suffix in (".safetensors", ".jsonl")
        }
        env = runner._env(parallel) | {"LEVERPLUS_STEP_PROCESS": "fresh"}
        code, _ = run_step(argv, env, workdir / f"redo-{label}.log")
        assert code == 0, (workdir / f"redo-{label}.log").read_text()[-2000:]
        differs = [str(name) for name, data in forked.items() if (where / name).read_bytes() != data]
        assert len(forked) >= (9 if label == "grpo" else 1) and differs == [], (label, differs)


def _on_a_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (read as it is written, so the child never blocks on it)."""
    import pty
    import threading

    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    screen: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            screen.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", b"".join(screen).decode(errors="replace"))  # colours, cursor
    return proc.returncode, stdout, text


@pytest.mark.slow
def test_run_balanced_v3_on_a_terminal_then_a_data_growth_round(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    a, screen = _run(tmp_path, "balanced-v3", terminal=True)
    assert set(a) == {"run_id", "report_uri", "metrics_uri"} and a["run_id"] == "run-0001"
    store = tmp_path / "leverplus-store"
    report = store / "runs/run-0001/report"
    for name in (
        "report.md",
        "report.html",
        "accuracy_vs_shots.png",
        "positive_ratio.png",
        "history.png",
        "training.png",
    ):
        assert (report / name).stat().st_size > 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["data"]) >= {"queries", "candidates", "positive_ratio"} and metrics["data"]["queries"] > 0
    seeds = {f"policy-seed{s}" for s in range(1, metrics["training"]["seeds"])}
    assert metrics["training"]["seeds"] == 3  # the embedded profile's seeds
    assert (
        set(metrics["eval"])
        == {"policy", "rce", "sft", "random", "similarity", "mmr", "retrieval", "zero-shot"} | seeds
    )
    assert set(metrics["paired"]) == {f"policy_vs_{x}" for x in ("sft", "rce", "similarity", "mmr", "retrieval")}
    assert set(metrics["seeds"]) == set(metrics["eval"]["policy"]) and metrics["seeds"]["1"]["seeds"] == 3
    ceilings = metrics["ceilings"]["2"]["expected_accuracy"]
    in_pool = [v for k, v in ceilings.items() if k not in ("best in pool", "retrieval")]  # retrieval has no pool
    assert ceilings["best in pool"] >= max(in_pool) and metrics["ceilings"]["2"]["best_heuristic"] in HEURISTICS
    assert set(metrics["curves"]) == {"sft", "rce", "grpo"} and metrics["eval_plan"]["sampler"] == "retrieved"
    assert "runs/run-0001/settings/grpo.yaml" in metrics["settings_files"]
    shot1 = metrics["eval"]["policy"]["1"]
    assert set(shot1) == {"accuracy", "ci95", "n", "per_answer_type"} and shot1["n"] == 120
    assert shot1["ci95"][0] <= shot1["accuracy"] <= shot1["ci95"][1]
    for k in ("1", "2"):  # the trained policy beats random ICDs
        assert metrics["eval"]["policy"][k]["accuracy"] > metrics["eval"]["random"][k]["accuracy"]
    assert (store / "runs/run-0001/eval/policy/shot2/predictions.jsonl").exists()
    text = (report / "report.md").read_text()
    assert "## What RL bought" in text and "Holm" in text and "## Ceilings (simulated LVLM, noise-free)" in text

    # What a person sees on a terminal: every step with a tick, and at the end the policy beside the baselines.
    for step in [s.name for s in PIPELINES["sft"].order()] + [s.name for s in PIPELINES["balanced-v3"].order()]:
        assert re.search(rf"✓ +{re.escape(step)} ", screen), f"step {step} never shown as done"
    assert "accuracy % (noise-free)" in screen and "report: file://" in screen and "│ policy" in screen
    assert '{"event"' not in screen  # no JSON log lines on a terminal
    _redo_in_new_interpreters(tmp_path, store)

    # A data-growth round in the same store, off a terminal: new queries only, v2 published, retraining triggered by
    # the growth, and the new report's history lists the first run.
    growth, logged = _run(tmp_path, "data-growth", "--sft-checkpoint", "runs/run-0001/checkpoints/sft")
    assert growth["run_id"] == "run-0002"
    plan1 = json.loads((store / "rounds/round-0001/plan.json").read_text())
    plan2 = json.loads((store / "rounds/round-0002/plan.json").read_text())
    ids = lambda plan: {q["question_id"] for shard in plan["shards"] for q in shard}  # noqa: E731
    assert not ids(plan1) & ids(plan2)
    assert (store / "rl-data/balanced/latest").read_text() == "v2\n"
    assert "| run-0001 |" in (store / "runs/run-0002/report/report.md").read_text()
    # Off a terminal: a structured event per step start and finish, with its duration.
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    finished = {e["step"] for e in events if e.get("pipeline") == "data-growth" and e.get("status") == "done"}
    assert finished == {s.name for s in PIPELINES["data-growth"].order()}
    assert all("seconds" in e for e in events if e.get("status") == "done")
    # Each step's own log has its progress: candidates while scoring, epochs and the loss while training.
    logs = next((tmp_path / "leverplus-logs").glob("*/run-0002"))
    progress = [
        json.loads(line) for f in logs.glob("*.log") for line in f.read_text().splitlines() if '"progress"' in line
    ]
    assert any(e.get("unit") == "candidates" and e["done"] == e["total"] for e in progress)
    grpo = [e for e in progress if e["what"].startswith("grpo seed") and e["done"] == e["total"] == 2]
    assert len(grpo) == 3 and all("loss" in e for e in grpo)  # three seeds, each to its last epoch

    # The whole store verifies; a report file altered afterwards is found by `verify`, and a later report lists
    # that run as failing verification instead of trusting (or crashing on) its numbers.
    from leverplus.cli import main
    from leverplus.config import load_settings
    from leverplus.stages.context import StageContext
    from leverplus.stages.report import run_report

    assert main(["verify", "--store", str(store)]) == 0
    metrics1 = store / "runs/run-0001/report/metrics.json"
    metrics1.write_text(metrics1.read_text().replace('"queries":', '"queries": 1e9, "was":', 1))
    assert main(["verify", "--store", str(store)]) == 2
    settings = load_settings(store / "runs/run-0002/settings.yaml", {"store.uri": str(store)})
    assert "| run-0001 |" in (store / "runs/run-0002/report/report.md").read_text()
    run_report(StageContext(settings, "report"), "run-0002")  # a finished report is kept as it is
    assert "| run-0001 |" in (store / "runs/run-0002/report/report.md").read_text()
    run_report(StageContext(settings, "report"), "run-0002", force=True)
    report2 = (store / "runs/run-0002/report/report.md").read_text()
    assert "| run-0001 |" not in report2 and "run-0001 (fails verification)" in report2


TINY_HF = """\
data: {synth_train: 150, synth_val: 30}
pool: {size: 8}
rl: {target_new_queries: 4, prior_acceptance_rate: 0.25, shard_size: 8, candidates_per_query: 6,
     min_pos_ratio: 0.1, max_pos_ratio: 0.9, rce_epochs: 1, grpo_epochs: 1, batch_queries: 4}
sft: {anchors: 8, candidates: 3, beam_width: 2, epochs: 2}
eval: {num_questions: 8, shots: [1, 2], bootstrap_samples: 100}
lvlm: {num_beams: 3, batch_size: 8}
"""


@pytest.mark.slow
def test_run_balanced_v3_with_the_transformers_backend(tmp_path: Path) -> None:
    """The whole pipeline through `leverplus run --lvlm hf` on a tiny real Qwen2.5-VL: InfoScore SFT data from
    teacher-forced answer probabilities, candidate scoring and evaluation by generation."""
    from leverplus.lvlm.tiny import build_qwen_vl

    build_qwen_vl(tmp_path / "tiny-qwen", answer_prior=True)  # says "yes", "red", "2"...: some answers are right
    (tmp_path / "hf.yaml").write_text(TINY_HF)
    summary, _ = _run(
        tmp_path, "balanced-v3", "--lvlm", "hf", "--set", f"lvlm.model={tmp_path / 'tiny-qwen'}", config="hf.yaml"
    )
    store = tmp_path / "leverplus-store"
    sft_rows = [
        json.loads(line)
        for f in sorted((store / "runs/run-0001/sft-data").glob("shards/*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len(sft_rows) == 8 and all(len(r["sequences"]) == 2 for r in sft_rows)
    scores = [x for r in sft_rows for x in r["infoscores"]]
    assert len(set(scores)) > 1 and all(-1 <= x <= 1 for x in scores)  # real probability differences
    groups = [
        json.loads(line) for line in (store / "rl-data/balanced/segments/round-0001.jsonl").read_text().splitlines()
    ]
    assert groups and all(g["lvlm"] == f"hf:{tmp_path / 'tiny-qwen'}" for g in groups)
    assert all(len(g["candidates"]) == 6 and 0 < sum(c["correct"] for c in g["candidates"]) < 6 for g in groups)
    assert {c["prediction"] for g in groups for c in g["candidates"]} <= {"yes", "no", "2", "red", "circle"}
    metrics = json.loads((store / "runs/run-0001/report/metrics.json").read_text())
    seeds = {f"policy-seed{s}" for s in range(1, metrics["training"]["seeds"])}
    assert (
        set(metrics["eval"])
        == {"policy", "rce", "sft", "random", "similarity", "mmr", "retrieval", "zero-shot"} | seeds
    )
    assert metrics["ceilings"] == {}  # a real LVLM cannot know its own expected accuracy
    assert metrics["eval"]["policy"]["1"]["n"] == 8
    assert summary["report_uri"].endswith("report.md")


def test_steps_fork_on_linux_and_start_a_new_interpreter_elsewhere(monkeypatch) -> None:
    from leverplus import steps

    monkeypatch.delenv("LEVERPLUS_STEP_PROCESS", raising=False)
    for platform, how in (("linux", "forked"), ("darwin", "fresh"), ("win32", "fresh")):
        monkeypatch.setattr(steps.sys, "platform", platform)
        assert steps._how({}) == how
    assert steps._how({"LEVERPLUS_STEP_PROCESS": "fresh"}) == "fresh"


def test_a_run_starts_its_fork_server_before_its_first_step() -> None:
    """`warm_up` (called first thing by `leverplus run`) starts the server that imports torch in the background, so
    that import overlaps with choosing the run and synthesising the world; with fresh steps it starts nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")}

    def started(mode: str, wait: float) -> list[str]:
        """(the fork server runs, torch was imported in this process) after warm_up and up to `wait` seconds."""
        probe = (
            "import sys, time\n"
            "from multiprocessing import forkserver\n"
            "from leverplus import steps\n"
            "if __name__ == '__main__':\n"
            "    steps.warm_up()\n"
            f"    deadline = time.monotonic() + {wait}\n"
            "    while forkserver._forkserver._forkserver_pid is None and time.monotonic() < deadline:\n"
            "        time.sleep(0.05)\n"
            "    print(forkserver._forkserver._forkserver_pid is not None, 'torch' in sys.modules)\n"
        )
        extra = {"LEVERPLUS_STEP_PROCESS": mode}
        proc = subprocess.run([sys.executable, "-c", probe], env=env | extra, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert started("forked", 30) == ["True", "False"]  # torch loads in the server, not in the runner
    assert started("fresh", 1) == ["False", "False"]
