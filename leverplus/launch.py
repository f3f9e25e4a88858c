"""`leverplus run <pipeline>` on one machine: resolve settings (the embedded profile when nothing is configured),
make sure the data exists, name the run and round, train the SFT policy first if none was given, execute the DAG
with the local runner, and say where the report is."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from leverplus.config import Settings, load_settings, settings_to_yaml
from leverplus.data.vqav2 import questions_file
from leverplus.local import LocalRunner
from leverplus.log import get_logger
from leverplus.pipeline import SFT, get_pipeline
from leverplus.stages.layout import check_id
from leverplus.store import Store, open_store

__all__ = ["RunRequest", "launch", "resolve_settings"]

_QUIET_ENV = {"LEVERPLUS_LOG_FORMAT", "LEVERPLUS_LOG_LEVEL"}


@dataclass
class RunRequest:
    pipeline: str
    config_file: str | None = None
    overrides: dict[str, Any] | None = None
    profile: str = "auto"  # auto | embedded | embedded-lab | none
    run_id: str | None = None
    round_id: str | None = None
    sft_checkpoint: str | None = None
    workers: int = 2
    log_dir: str | None = None


def _embedded_overlay(lab: bool = False) -> dict[str, Any]:
    """The embedded profile; with lab=True its RL settings are the lab report's (the defaults) instead of the
    ones chosen on a dev split for this world."""
    overlay = yaml.safe_load(resources.files("leverplus.profiles").joinpath("embedded.yaml").read_text())
    if lab:
        for key in ("seeds", "grpo_lr"):
            overlay["rl"].pop(key, None)
    return overlay


def _scaled(overlay: dict[str, Any], defaults: Settings) -> list[str]:
    return [
        f"{g}.{k}: {getattr(getattr(defaults, g), k)!r} -> {v!r}"
        for g, fields in overlay.items()
        for k, v in fields.items()
        if getattr(getattr(defaults, g), k) != v
    ]


def resolve_settings(req: RunRequest, workdir: Path) -> tuple[Settings, list[str]]:
    """Settings for the run, and what the embedded profile scaled down (empty when it does not apply)."""
    user_file = req.config_file or os.environ.get("LEVERPLUS_CONFIG")
    configured = bool(
        user_file or req.overrides or any(k.startswith("LEVERPLUS_") and k not in _QUIET_ENV for k in os.environ)
    )
    embedded = req.profile in ("embedded", "embedded-lab") or (req.profile == "auto" and not configured)
    if not embedded:
        return load_settings(user_file, req.overrides), []
    overlay = _embedded_overlay(lab=req.profile == "embedded-lab")
    merged = {g: dict(v) for g, v in overlay.items()}
    if user_file:
        for group, fields in (yaml.safe_load(Path(user_file).read_text()) or {}).items():
            merged.setdefault(group, {}).update(fields or {})
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(merged))
    return load_settings(path, req.overrides), _scaled(overlay, Settings())


def _next_id(store: Store, prefix: str, stem: str) -> str:
    """Sequential ids (round-0001, ...) so that the same seed gives byte-identical artifacts in a fresh store."""
    taken = {key.split("/")[1] for key in store.list(f"{prefix}/")}
    n = 1
    while f"{stem}-{n:04d}" in taken:
        n += 1
    return f"{stem}-{n:04d}"


def ensure_world(settings: Settings) -> None:
    root = open_store(settings.data_root(), settings.store)
    if root.exists(questions_file(settings.data.train_split)) or not settings.data.synthesize_if_missing:
        return
    from leverplus.data.synth import synthesize
    from leverplus.progress import progress

    d = settings.data
    get_logger().info("synthesising the world", root=root.uri, train=d.synth_train, val=d.synth_val, seed=d.synth_seed)
    with progress(d.synth_train + d.synth_val, "synthesising the world") as update:
        synthesize(root, d.synth_seed, {"train": d.synth_train, "val": d.synth_val}, progress=update)


def launch(req: RunRequest) -> dict[str, str]:
    pipeline = get_pipeline(req.pipeline)
    # Ids become folder names and store keys: check them before anything is written (issue 12 D7).
    for value, what in ((req.run_id, "run id"), (req.round_id, "round id")):
        if value is not None:
            check_id(value, what)
    log = get_logger()
    staging = Path(req.log_dir or "leverplus-logs") / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    settings, scaled = resolve_settings(req, staging)
    if settings.run.run_id is not None:
        check_id(settings.run.run_id, "run id")
    if scaled:
        log.info("embedded default: synthetic world, sim LVLM, simple encoder; scaled down", changes=scaled)
    store = open_store(settings.store.uri, settings.store)
    ensure_world(settings)
    run_id = req.run_id or settings.run.run_id or _next_id(store, "runs", "run")
    params = {
        "run_id": run_id,
        "round_id": req.round_id or _next_id(store, "rounds", "round"),
        "sft_checkpoint": req.sft_checkpoint or "",
    }
    log_dir = Path(req.log_dir or "leverplus-logs") / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    config_file = log_dir / "settings.yaml"
    config_file.write_text(settings_to_yaml(settings, secrets="omit"))  # credentials reach steps via env only
    store.put_bytes(f"runs/{run_id}/settings.yaml", config_file.read_bytes())
    runner = LocalRunner(config_file, log_dir, req.workers)
    if "sft_checkpoint" in pipeline.params and not params["sft_checkpoint"]:
        log.info("no SFT policy given: training one first", run_id=run_id)
        runner.on_step = _announce(SFT.name)
        runner.run(SFT, params)
        params["sft_checkpoint"] = f"runs/{run_id}/checkpoints/sft"
    runner.on_step = _announce(pipeline.name)
    runner.run(pipeline, params)
    report = f"runs/{run_id}/report/report.md"
    summary = {
        "run_id": run_id,
        "round_id": params["round_id"],
        "report_uri": store.uri_for(report) if store.exists(report) else "",
        "metrics_uri": store.uri_for(f"runs/{run_id}/report/metrics.json") if store.exists(report) else "",
    }
    log.info("run finished", **summary, logs=str(log_dir))
    return summary


def _announce(pipeline: str) -> Any:
    """Progress of a pipeline: a bar over its steps on a terminal, a log line per step change in pods and CI."""
    log = get_logger()
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(get_pipeline(pipeline).steps), desc=pipeline, unit="step", leave=True)

    def on_step(step: str, status: str) -> None:
        if bar is None:
            if status != "done":
                log.info(f"{pipeline}: {step} {status}")
            return
        bar.set_postfix_str(f"{step} {status}")
        if status in ("done", "skipped"):
            bar.update(1)

    return on_step


def write_summary(summary: dict[str, str], path: str) -> None:
    Path(path).write_text(json.dumps({k: summary[k] for k in ("run_id", "report_uri", "metrics_uri")}) + "\n")
