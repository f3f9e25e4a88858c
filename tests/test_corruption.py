"""Issue 22: the corruption matrix. A small store grows through two nightly rounds; then every object in it, in
turn, is truncated, has a byte flipped, is deleted and (JSON) has one value changed. Each damage must be either
reported by `verify`, in a line naming the object, or leave the next round's published data byte-identical to what
the undamaged store publishes. docs/RELIABILITY.md lists what protects each kind of object."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from leverplus.config import load_settings
from leverplus.data.synth import synthesize
from leverplus.errors import LeverPlusError
from leverplus.stages.balanced import load_balanced, segments
from leverplus.stages.context import StageContext
from leverplus.stages.features import run_features
from leverplus.stages.filter import run_filter
from leverplus.stages.layout import plan_key
from leverplus.stages.plan import run_plan
from leverplus.stages.score import run_score
from leverplus.stages.verify import run_verify
from leverplus.store import Store, open_store
from leverplus.store.local import LocalStore

NIGHT = {
    "data.name": "synthetic",
    "lvlm.backend": "sim",
    "features.encoder": "simple",
    "pool.size": 8,
    "rl.shard_size": 6,
    "rl.candidates_per_query": 10,
    "rl.target_new_queries": 5,
    "rl.prior_acceptance_rate": 0.5,
}


def _ctx(uri: str, stage: str) -> StageContext:
    return StageContext(load_settings(overrides={**NIGHT, "store.uri": uri}), stage)


def night(uri: str, round_id: str) -> bytes:
    """One nightly round as the data-growth workflow runs its publishing steps: features (skipped when they exist),
    plan, every score shard, filter. -> what it published: the newest version's groups, canonical."""
    run_features(_ctx(uri, "features"))
    plan = run_plan(_ctx(uri, "plan"), "rl", plan_key(round_id), round_id)
    for shard in plan.shard_ids():
        run_score(_ctx(uri, "score"), round_id, shard, policy_uri=None)
    run_filter(_ctx(uri, "filter"), round_id)
    return published(open_store(uri))


def published(store: Store) -> bytes:
    version, groups = load_balanced(store)
    names = [s.key for s in segments(store, version)]
    return json.dumps([version, names, [g.model_dump(mode="json") for g in groups]], sort_keys=True).encode()


class Grown(NamedTuple):
    root: Path  # the store after two nightly rounds
    expected: bytes  # what the third round publishes on it undamaged
    touched: set[str]  # every key the third round opened, checked or listed


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Grown:
    root = tmp_path_factory.mktemp("grown") / "store"
    synthesize(open_store(str(root / "datasets" / "synthetic")), 0, {"train": 80, "val": 12})
    for round_id in ("round-1", "round-2"):
        night(str(root), round_id)
    clean = tmp_path_factory.mktemp("clean") / "store"
    shutil.copytree(root, clean)
    with _watching(clean) as touched:
        expected = night(str(clean), "round-3")
    return Grown(root, expected, touched)


@contextmanager
def _watching(root: Path) -> Iterator[set[str]]:
    """The keys of the store at root that anything opens, checks or lists meanwhile. A key outside them cannot
    change what the round publishes, however it is damaged: nothing reads it."""
    touched: set[str] = set()
    methods = {name: getattr(LocalStore, name) for name in ("open", "exists", "list")}

    def watch(name: str) -> Callable:
        def wrapper(self: LocalStore, key: str = "", *args: object) -> object:
            result = methods[name](self, key, *args)
            if self.root.is_relative_to(root.resolve()):  # the store, or a dataset root inside it
                inside = self.root.relative_to(root.resolve()).as_posix().removeprefix(".")
                found = result if name == "list" else [key]
                touched.update(f"{inside}/{k}".lstrip("/") for k in found)  # type: ignore[union-attr]
            return result

        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        for name in methods:
            patch.setattr(LocalStore, name, watch(name))
        yield touched


# ---- damages: each returns the damaged bytes (None: delete) ---------------------------------------------------------
def _truncate(raw: bytes) -> bytes | None:
    return raw[: len(raw) // 2]


def _flip(raw: bytes) -> bytes | None:
    if not raw:
        return b"\x00"
    i = len(raw) // 2
    return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]


def _delete(raw: bytes) -> bytes | None:
    return None


def _change_value(raw: bytes) -> bytes | None:
    """One value of a JSON document (or of a JSONL file's first line) changed, the rest as it was."""
    lines = raw.split(b"\n")
    doc = json.loads(lines[0])
    leaves = list(_leaves(doc))
    if not leaves:
        return None
    set_leaf, value = leaves[len(leaves) // 2]
    set_leaf(_other(value))
    lines[0] = json.dumps(doc).encode()
    return b"\n".join(lines)


def _leaves(node: object) -> Iterator[tuple[Callable[[object], None], object]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        if isinstance(value, dict | list):
            yield from _leaves(value)
        else:
            yield (lambda v, n=node, k=key: n.__setitem__(k, v)), value


def _other(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.25
    if isinstance(value, str):
        return value + "x"
    return 0


DAMAGES = {"truncated": _truncate, "a byte flipped": _flip, "deleted": _delete, "a value changed": _change_value}


def _damaged_copy(src: Path, dst: Path, key: str, damage: Callable[[bytes], bytes | None]) -> bool:
    """A copy of the store (hard links: the store only ever replaces files) with one object damaged. False when the
    damage does not apply (a JSON change to a file with no value)."""
    shutil.copytree(src, dst, copy_function=os.link)
    target = dst / key
    raw = target.read_bytes()
    try:
        damaged = damage(raw)
    except ValueError:  # not JSON after all
        shutil.rmtree(dst)
        return False
    target.unlink()  # never write through the link into the undamaged store
    if damaged is not None:
        target.write_bytes(damaged)
    return True


def _reported(uri: str, key: str) -> bool:
    """Whether verify reports the damaged object; a traceback from verify is a finding (AssertionError)."""
    try:
        _, problems, _ = run_verify(_ctx(uri, "verify"))
    except LeverPlusError as exc:  # verify itself refused the store: one line, naming it
        problems = [str(exc)]
    except Exception as exc:
        raise AssertionError(f"verify crashed: {type(exc).__name__}: {exc}") from exc
    return any(key in line for line in problems)


def _outcome(root: Path, key: str, damage: str, expected: bytes, scratch: Path) -> str:
    """'' when the damage is handled; else what went wrong."""
    copy = scratch / "store"
    if not _damaged_copy(root, copy, key, DAMAGES[damage]):
        return ""
    try:
        try:
            if _reported(str(copy), key):
                return ""
        except AssertionError as exc:
            return str(exc)
        try:
            got = night(str(copy), "round-3")
        except LeverPlusError as exc:
            return f"not reported by verify, and the next round failed: {exc}"
        except Exception as exc:  # a traceback is a finding too
            return f"not reported by verify, and the next round crashed: {type(exc).__name__}: {exc}"
        return "" if got == expected else "not reported by verify, and the next round published other data"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_every_damage_to_every_object_is_reported_or_changes_nothing(grown: Grown, tmp_path: Path) -> None:
    keys = sorted(p.relative_to(grown.root).as_posix() for p in grown.root.rglob("*") if p.is_file())
    assert len(keys) > 50 and {"rl-data/balanced/v2.manifest.json", "rounds/round-2/queries.json"} <= set(keys)
    unread = [k for k in keys if k not in grown.touched]  # dataset images: the features were computed already
    assert all(k.endswith(".jpg") for k in unread) and len(unread) < len(keys) / 2
    findings = []
    for key in (k for k in keys if k in grown.touched):
        for damage in DAMAGES if key.endswith((".json", ".jsonl")) else list(DAMAGES)[:3]:
            if problem := _outcome(grown.root, key, damage, grown.expected, tmp_path):
                findings.append(f"{key} {damage}: {problem}")
    assert findings == [], "\n".join(findings)


S3_SAMPLE = [  # one object of each kind the next round reads, each damaged the way that hurts it most
    ("rl-data/balanced/v2.manifest.json", "a value changed"),
    ("rl-data/balanced/latest", "deleted"),
    ("rl-data/balanced/segments/round-2.ids.json", "a byte flipped"),
    ("rounds/round-2/queries.json", "truncated"),
    ("rounds/round-1/manifest.json", "a value changed"),
    ("features/simple/train.safetensors", "a byte flipped"),
]


@pytest.mark.slow
def test_a_sample_of_damages_on_s3_is_reported_or_changes_nothing(grown: Grown, s3_env, tmp_path: Path) -> None:
    s3 = s3_env.client()
    findings = []
    for key, damage in S3_SAMPLE:
        bucket = s3_env.new_bucket()
        local = tmp_path / bucket
        _damaged_copy(grown.root, local, key, DAMAGES[damage])
        for path in (p for p in local.rglob("*") if p.is_file() and not p.name.endswith(".jpg")):
            s3.put_object(Bucket=bucket, Key=f"store/{path.relative_to(local).as_posix()}", Body=path.read_bytes())
        uri = f"s3://{bucket}/store"
        if _reported(uri, key):
            continue
        if night(uri, "round-3") != grown.expected:
            findings.append(f"{key} {damage}: not reported by verify, and the next round published other data")
    assert findings == [], "\n".join(findings)
