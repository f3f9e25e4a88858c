"""What `leverplus run` records in the store so that the same command typed again continues the same run.

    runs/<run-id>/run.json       pipeline, round id, SFT checkpoint, settings hash, status (running | finished)
    runs/<run-id>/settings.yaml  the resolved settings (no credentials)

The record is written before the first step and marked finished after the last one. A run that never reached
"finished" (killed, failed, machine gone) is unfinished: `leverplus run <pipeline>` continues the newest unfinished
run of that pipeline when its settings are the same, and refuses with both hashes and the first differences when
they are not. Every step is idempotent against its own outputs, so continuing redoes only what is missing.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leverplus.errors import ConfigError, IntegrityError, first_problem
from leverplus.ids import ID_RULE, is_id
from leverplus.records import canonical_json
from leverplus.stages.layout import run_prefix
from leverplus.store import Store

__all__ = [
    "RunRecord",
    "differences",
    "newest_unfinished",
    "read_record",
    "record_key",
    "recorded_settings",
    "records",
    "settings_key",
    "write_record",
]


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    round_id: str
    pipeline: str
    sft_checkpoint: str  # as given on the command line; "" when the run trains its own
    settings_hash: str
    status: Literal["running", "finished"] = "running"
    outcome: str = ""  # finished runs: what the last step decided (e.g. growth check false, and why)
    host: str = ""  # the runner executing it (or that last did): two runners never execute one run at once
    pid: int = Field(0, ge=0, le=4_194_304)  # Linux's largest pid_max

    @field_validator("run_id", "round_id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        """Ids become folder names: one edited to '../..' must not write outside the log folder."""
        if value and not is_id(value):
            raise ValueError(f"{value[:40]!r} is not an id ({ID_RULE})")
        return value


def record_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/run.json"


def read_record(store: Store, run_id: str) -> RunRecord | None:
    """The run's record; an IntegrityError naming the object and the field when it is damaged."""
    key = record_key(run_id)
    if not store.exists(key):
        return None
    try:
        record = RunRecord.model_validate_json(store.get_bytes(key))
    except ValidationError as exc:
        raise IntegrityError(f"{store.uri_for(key)}: not a run record ({first_problem(exc)})") from exc
    if record.run_id != run_id:
        raise IntegrityError(f"{store.uri_for(key)}: not a run record (run_id: {record.run_id!r}, in {run_id}/)")
    return record


def write_record(store: Store, record: RunRecord) -> None:
    store.put_bytes(record_key(record.run_id), canonical_json(record) + b"\n")


def settings_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/settings.yaml"


def records(store: Store, *, damaged: list[str] | None = None) -> list[RunRecord]:
    """Every run record in the store, in id order (ids sort by creation: run-0001, run-0002, ...). A damaged one
    raises, unless `damaged` is given: then its problem is appended there and it is left out."""
    ids = sorted({k.split("/")[1] for k in store.list("runs/") if k.endswith("/run.json")})
    found = []
    for run_id in ids:
        try:
            found.append(read_record(store, run_id))
        except IntegrityError as exc:
            if damaged is None:
                raise
            damaged.append(str(exc))
    return [r for r in found if r is not None]


def newest_unfinished(store: Store, pipeline: str) -> RunRecord | None:
    """The unfinished run of `pipeline` with the highest id. A damaged record might be that run: an error naming
    it, with the way out."""
    damaged: list[str] = []
    mine = [r for r in records(store, damaged=damaged) if r.pipeline == pipeline and r.status == "running"]
    if damaged:
        raise IntegrityError(f"{damaged[0]}: cannot tell whether it is the run to continue; fix or remove it, or "
                             "add --new to start another run")  # fmt: skip
    return mine[-1] if mine else None


def _flat(data: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, object] = {}
    for key, value in data.items():
        out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def differences(before_yaml: bytes, now_yaml: str, limit: int = 3) -> str:
    """'rl.retrain_growth 0.2 -> 0.9, ...': the first settings that differ between two resolved settings files."""
    try:
        before = _flat(yaml.safe_load(before_yaml) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"the run's recorded settings are not valid YAML: {exc}") from exc
    now = _flat(yaml.safe_load(now_yaml) or {})
    keys = sorted(set(before) | set(now))
    changed = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k)]
    more = f" (and {len(changed) - limit} more)" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more


def recorded_settings(store: Store, run_id: str | None, round_id: str | None) -> tuple[str, bytes] | None:
    """(which run, its settings.yaml) for a stage started by hand on a run or on a `leverplus run`'s round."""
    if run_id is None:
        run_id = next((r.run_id for r in records(store) if round_id is not None and r.round_id == round_id), None)
    if run_id is None or not store.exists(key := settings_key(run_id)):
        return None
    return run_id, store.get_bytes(key)
