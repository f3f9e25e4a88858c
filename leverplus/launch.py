"""`leverplus run <pipeline>` on one machine: resolve settings (the embedded profile when nothing is configured),
continue the newest unfinished run of the pipeline or name a new run and round, make sure the data exists, train
the SFT policy first if none was given, execute the DAG with the local runner, and say where the report is."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from leverplus.config import (
    ENV_PREFIX,
    NON_SETTINGS_ENV,
    Settings,
    credentials_env,
    load_settings,
    masked_overrides,
    settings_hash,
    settings_to_yaml,
)
from leverplus.data.vqav2 import annotations_file
from leverplus.errors import ConfigError, ConflictError
from leverplus.live import LiveMonitor, LogMonitor, StepMonitor, print_summary
from leverplus.local import LocalRunner
from leverplus.log import get_logger, json_logs_enabled
from leverplus.pipeline import SFT, get_pipeline
from leverplus.run_record import (
    RunRecord,
    differences,
    newest_unfinished,
    read_record,
    records,
    settings_key,
    write_record,
)
from leverplus.stages.growth import decision_key, growth_summary
from leverplus.stages.layout import check_id
from leverplus.steps import warm_up
from leverplus.store import Store, open_store, store_or_full_uri
from leverplus.store.lease import holder_gone, this_host

__all__ = ["RunRequest", "choose_run", "launch", "resolve_settings", "staging_dir"]


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
    new: bool = False  # start a new run even when an unfinished one of this pipeline exists


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
    # A config file or LEVERPLUS_* environment is a configuration of its own; --set only adjusts the profile.
    configured = bool(user_file or any(k.startswith(ENV_PREFIX) and k not in NON_SETTINGS_ENV for k in os.environ))
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


def _next_id(taken: set[str], stem: str) -> str:
    """Sequential ids (round-0001, ...) so that the same seed gives byte-identical artifacts in a fresh store."""
    n = 1
    while f"{stem}-{n:04d}" in taken:
        n += 1
    return f"{stem}-{n:04d}"


def _taken(store: Store, prefix: str) -> set[str]:
    return {key.split("/")[1] for key in store.list(f"{prefix}/")}


def _new_record(store: Store, req: RunRequest, settings: Settings, run_id: str | None) -> RunRecord:
    pipeline = get_pipeline(req.pipeline)
    round_id = ""
    if "round_id" in pipeline.params:
        # A killed run may have recorded its round before planning it: that id is taken too.
        claimed = {r.round_id for r in records(store, damaged=[])}  # a damaged record is left out
        round_id = req.round_id or _next_id(_taken(store, "rounds") | claimed, "round")
    return RunRecord(
        run_id=run_id or _next_id(_taken(store, "runs"), "run"),
        round_id=round_id,
        pipeline=req.pipeline,
        sft_checkpoint=req.sft_checkpoint or "",
        settings_hash=settings_hash(settings),
    )


def _check_same(store: Store, record: RunRecord, req: RunRequest, settings: Settings) -> None:
    """Continuing a run is only right with the command that started it: same pipeline, settings and inputs."""
    what = f"run {record.run_id} ({record.pipeline}, {record.status}) in {store.uri}"
    advice = "run the command that started it to continue it, or add --new to start another run"
    if record.pipeline != req.pipeline:
        raise ConfigError(f"{what} is not a {req.pipeline} run: pick another --run-id")
    for name, given, recorded in (
        ("--sft-checkpoint", req.sft_checkpoint, record.sft_checkpoint),
        ("--round-id", req.round_id, record.round_id),
    ):
        if given and given != recorded:
            raise ConfigError(f"{what} was started with {name} {recorded or '(none)'!r}, not {given!r}: {advice}")
    digest = settings_hash(settings)
    if digest != record.settings_hash:
        before = store.get_bytes(settings_key(record.run_id))
        changed = differences(before, settings_to_yaml(settings, secrets="omit"))
        raise ConfigError(
            f"{what} was started with settings {record.settings_hash[:12]}, this command resolves to {digest[:12]} "
            f"({changed}): {advice}"
        )


def _check_not_running(store: Store, record: RunRecord) -> None:
    """The same command typed in a second terminal must not execute the run a live runner is executing."""
    if record.status != "running" or record.host != this_host() or not record.pid:
        return  # on another host a live runner cannot be told from a dead one; stages stay idempotent either way
    if not holder_gone({"host": record.host, "pid": record.pid}):
        raise ConflictError(
            f"run {record.run_id} in {store.uri} is being executed by pid {record.pid} on this host: wait for it, "
            "or add --new to start another run"
        )


def choose_run(store: Store, req: RunRequest, settings: Settings) -> tuple[RunRecord, bool]:
    """The run this command continues (True) or the new one it starts (False); see leverplus.run_record."""
    run_id = req.run_id or settings.run.run_id
    if run_id is not None:
        record = read_record(store, run_id)
        if record is not None and req.new:
            raise ConfigError(f"run {run_id} already exists in {store.uri}: leave out --new to continue it")
    else:
        record = None if req.new else newest_unfinished(store, req.pipeline)
    if record is None:
        return _new_record(store, req, settings, run_id), False
    _check_same(store, record, req, settings)
    return record, True


def ensure_world(settings: Settings) -> None:
    """Synthesise the splits the data root lacks. A split is complete once its annotations file exists (written
    last), so a synthesis killed half-way is finished by the next run instead of leaving a world without val."""
    root = open_store(settings.data_root(), settings.store)
    d = settings.data
    sizes = {"train": d.synth_train, "val": d.synth_val}
    missing = {split: n for split, n in sizes.items() if not root.exists(annotations_file(split))}
    if not missing or not d.synthesize_if_missing:
        return
    from leverplus.data.synth import synthesize
    from leverplus.progress import progress

    get_logger().info("synthesising the world", root=root.uri, **missing, seed=d.synth_seed)
    with progress(sum(missing.values()), "synthesising the world") as update:
        synthesize(root, d.synth_seed, missing, progress=update)


def _log_dir(root: Path, store: Store, run_id: str) -> Path:
    """Logs are keyed by store and run: run-0001 of another store never overwrites this one's."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", store.uri.rstrip("/").rsplit("/", 1)[-1])[:40]
    return root / f"{slug}-{hashlib.sha256(store.uri.encode()).hexdigest()[:8]}" / run_id


def _check_checkpoint(store: Store, settings: Settings, uri: str) -> None:
    """A mistyped --sft-checkpoint fails now, not after synthesis, features and planning."""
    full = store_or_full_uri(store, uri)
    if not open_store(full, settings.store).exists("config.json"):
        raise ConfigError(f"--sft-checkpoint {uri}: no policy checkpoint at {full} (config.json is missing)")


def staging_dir(log_root: Path) -> Path:
    """Where settings are resolved before a run has an id (and so a log folder of its own)."""
    staging = log_root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def launch(req: RunRequest) -> dict[str, str]:
    pipeline = get_pipeline(req.pipeline)
    # Ids become folder names and store keys: check them before anything is written (issue 12 D7).
    for value, what in ((req.run_id, "run id"), (req.round_id, "round id")):
        if value is not None:
            check_id(value, what)
    if req.workers < 1:
        raise ConfigError(f"--workers {req.workers}: need at least 1 parallel process")
    log = get_logger()
    warm_up()
    log_root = Path(req.log_dir or "leverplus-logs")
    settings, scaled = resolve_settings(req, staging_dir(log_root))
    if settings.run.run_id is not None:
        check_id(settings.run.run_id, "run id")
    if scaled:
        log.info("embedded default: synthetic world, sim LVLM, simple encoder; scaled down", changes=scaled)
    if req.overrides:
        log.info("overrides from the command line", overrides=masked_overrides(req.overrides))
    store = open_store(settings.store.uri, settings.store)
    record, resumed = choose_run(store, req, settings)
    if req.sft_checkpoint:
        _check_checkpoint(store, settings, req.sft_checkpoint)
    run_id = record.run_id
    log_dir = _log_dir(log_root, store, run_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    config_file = log_dir / "settings.yaml"
    config_file.write_text(settings_to_yaml(settings, secrets="omit"))
    if resumed:
        _check_not_running(store, record)
        log.info("continuing an unfinished run (add --new for another)", run_id=run_id, round_id=record.round_id)
    else:
        store.put_bytes(settings_key(run_id), config_file.read_bytes())
    record = record.model_copy(update={"host": this_host(), "pid": os.getpid(), "status": "running"})
    write_record(store, record)
    ensure_world(settings)
    params = {"run_id": run_id, "round_id": record.round_id, "sft_checkpoint": record.sft_checkpoint}
    runner = LocalRunner(config_file, log_dir, req.workers, env=credentials_env(settings))
    if "sft_checkpoint" in pipeline.params and not params["sft_checkpoint"]:
        log.info("no SFT policy given: training one first", run_id=run_id)
        runner.monitor = _monitor(SFT.name)
        runner.run(SFT, params)
        params["sft_checkpoint"] = f"runs/{run_id}/checkpoints/sft"
    runner.monitor = _monitor(pipeline.name)
    runner.run(pipeline, params)
    outcome = _outcome(store, run_id)
    write_record(store, record.model_copy(update={"status": "finished", "outcome": outcome}))
    report = f"runs/{run_id}/report/report.md"
    summary = {
        "run_id": run_id,
        "round_id": record.round_id,
        "report_uri": store.uri_for(report) if store.exists(report) else "",
        "metrics_uri": store.uri_for(f"runs/{run_id}/report/metrics.json") if store.exists(report) else "",
        "outcome": outcome,
    }
    log.info("run finished", **summary, logs=str(log_dir))
    if summary["metrics_uri"] and _person_watching():
        print_summary(json.loads(store.get_bytes(f"runs/{run_id}/report/metrics.json")), summary["report_uri"])
    return summary


def _outcome(store: Store, run_id: str) -> str:
    """What a run decided that a person should hear: today, a data-growth round that did not retrain, and why."""
    key = decision_key(run_id)
    if not store.exists(key):
        return ""
    return growth_summary(json.loads(store.get_bytes(key)))


def _person_watching() -> bool:
    """stderr is a terminal showing console logs: the live table and the summary are for a person, not a log."""
    return sys.stderr.isatty() and not json_logs_enabled()


def _monitor(pipeline: str) -> StepMonitor:
    """A live table of the steps when a person watches the terminal, a structured event per step otherwise."""
    if _person_watching():
        return LiveMonitor(pipeline, [step.name for step in get_pipeline(pipeline).order()])
    return LogMonitor(pipeline)


def write_summary(summary: dict[str, str], path: str) -> None:
    Path(path).write_text(json.dumps({k: summary[k] for k in ("run_id", "report_uri", "metrics_uri")}) + "\n")
