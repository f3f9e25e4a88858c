"""One typed view of what a store holds: rounds, balanced versions, runs, and the lease. Every read of their
manifests' stats goes through here, as pydantic models: a missing or mistyped field fails naming the object
instead of reading as zero. `plan`, `growth-check`, `filter`, `report` and `leverplus status` use it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from leverplus.errors import IntegrityError, NotFoundError, first_problem
from leverplus.log import get_logger
from leverplus.records import Plan, PlanIndex
from leverplus.run_record import RunRecord, read_record
from leverplus.stages.layout import BALANCED, LEASE, plan_index_key, plan_key, queries_key
from leverplus.store import Store
from leverplus.store.lease import describe_holder, holder_gone, read_holder

__all__ = ["Catalog", "RoundStats", "RunSummary", "SetStats", "VersionStats"]


_BY_SHARD = TypeAdapter(list[list[int]])


class _Stats(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SetStats(_Stats):
    """A set of candidate groups: how many, and how balanced. Its counts must agree with each other: one edited
    value fails here, before a later version or plan builds on it (`verify` recomputes them from the groups)."""

    queries: int
    candidates: int
    positives: int | None = None  # None in manifests written before it was recorded (positive_ratio is rounded)
    positive_ratio: float
    ratio_histogram: list[int]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if sum(self.ratio_histogram) != self.queries or not 0 <= self.queries <= self.candidates:
            raise ValueError(f"queries {self.queries} disagrees with its ratio histogram or candidates")
        if self.positives is not None:
            ratio = round(self.positives / self.candidates, 4) if self.candidates else 0.0
            if not 0 <= self.positives <= self.candidates or ratio != self.positive_ratio:
                raise ValueError(f"positives {self.positives} of {self.candidates} disagrees with its positive_ratio")
        return self


class VersionStats(SetStats):
    """rl-data/balanced/v<n>.manifest.json: the set after a round, and what the round added."""

    round_id: str
    added_queries: int
    segments: list[str] | None = None  # None: a single-file version (v<n>.jsonl) from before segments

    @model_validator(mode="after")
    def _added(self) -> Self:
        if not 0 <= self.added_queries <= self.queries:
            raise ValueError(f"added_queries {self.added_queries} is not within queries {self.queries}")
        return self


class RoundStats(_Stats):
    """rounds/<id>/manifest.json, written by `filter`. Later plans size themselves by its acceptance counts."""

    scored_queries: int
    accepted_queries: int
    added_queries: int
    scored: SetStats
    accepted: SetStats
    version: str
    balanced_range: tuple[float, float] | None = None  # (min, max) positive ratio; None before it was recorded

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        counts = (self.scored_queries, self.accepted_queries, self.added_queries)
        if counts[:2] != (self.scored.queries, self.accepted.queries) or not counts[0] >= counts[1] >= counts[2] >= 0:
            raise ValueError(f"scored/accepted/added queries {'/'.join(map(str, counts))} disagree with each other")
        return self


class RunSummary(_Stats):
    run_id: str
    pipeline: str = ""  # "" for runs started without `leverplus run` (Argo workflows)
    status: str = ""  # running | finished | "" (no record)
    outcome: str = ""
    report: bool = False
    policy_accuracy: dict[str, float] = {}  # shots -> accuracy of the trained policy, from the report


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _stats(self, key: str, model: type[_Stats]) -> Any:
        return self._read(key, model)[0]

    def _read(self, key: str, model: type[_Stats]) -> tuple[Any, dict[str, str]]:
        """(its stats, its outputs: name -> sha256) from one read of a manifest."""
        try:
            manifest = json.loads(self.store.get_bytes(key))
            return model.model_validate(manifest["stats"]), manifest.get("outputs", {})
        except (ValidationError, KeyError, ValueError) as exc:
            raise IntegrityError(f"{self.store.uri_for(key)}: stats unreadable ({_first(exc)})") from exc

    # Balanced versions ------------------------------------------------------------------------------------------
    def version_numbers(self) -> list[int]:
        names = (k.rsplit("/", 1)[1] for k in self.store.list(f"{BALANCED}/") if k.endswith(".manifest.json"))
        return sorted(int(n.split(".")[0][1:]) for n in names if n.startswith("v") and n.split(".")[0][1:].isdigit())

    def published(self) -> int:
        """The newest version (0: none). Creating `v<n>.manifest.json`, once and exclusively, is what publishes v<n>;
        `latest` is a pointer for outside readers, moved after it. Neither is trusted blindly: a gap in the version
        numbers or a pointer naming a version with no manifest means a manifest was deleted, and the next round
        would otherwise write another v<n>: an IntegrityError naming what is missing."""
        numbers = self.version_numbers()
        newest = numbers[-1] if numbers else 0
        if numbers != list(range(1, newest + 1)):
            missing = sorted(set(range(1, newest + 1)) - set(numbers))
            raise IntegrityError(
                f"{self.store.uri_for(f'{BALANCED}/v{missing[0]}.manifest.json')} is missing while "
                f"v{newest} exists: a published version was deleted"
            )
        if (pointer := self.pointer()) > newest:
            raise IntegrityError(
                f"{self.store.uri_for(f'{BALANCED}/latest')} names v{pointer}, but "
                f"{self.store.uri_for(f'{BALANCED}/v{pointer}.manifest.json')} is missing: a published version "
                "was deleted"
            )
        return newest

    def pointer(self) -> int:
        """The version the `latest` pointer names (0: no pointer). Below the newest version after a kill between a
        version's manifest and the pointer; the next publish moves it."""
        key = f"{BALANCED}/latest"
        if not self.store.exists(key):
            return 0
        text = self.store.get_bytes(key).decode(errors="replace").strip()
        if not (text.startswith("v") and text[1:].isdigit()):
            raise IntegrityError(f"{self.store.uri_for(key)}: expected 'v<n>', found {text[:20]!r}")
        return int(text[1:])

    def version(self, version: int | str) -> VersionStats:
        name = version if isinstance(version, str) else f"v{version}"
        return self._stats(f"{BALANCED}/{name}.manifest.json", VersionStats)

    def version_outputs(self, version: int) -> tuple[VersionStats, dict[str, str]]:
        """A version's stats and the sha256 of every object it lists, from one read of its manifest."""
        return self._read(f"{BALANCED}/v{version}.manifest.json", VersionStats)

    def versions(self) -> dict[str, VersionStats]:
        return {f"v{n}": self.version(n) for n in self.version_numbers()}

    # Rounds -----------------------------------------------------------------------------------------------------
    def round_ids(self) -> list[str]:
        return sorted({k.split("/")[1] for k in self.store.list("rounds/")})

    def round(self, round_id: str) -> RoundStats | None:
        """The round's filter stats, or None when it has not been filtered yet."""
        key = f"rounds/{round_id}/manifest.json"
        return self._stats(key, RoundStats) if self.store.exists(key) else None

    def round_outputs(self, round_id: str) -> tuple[RoundStats, dict[str, str]]:
        """A filtered round's stats and the sha256 of each shard it joined, from one read of its manifest."""
        return self._read(f"rounds/{round_id}/manifest.json", RoundStats)

    def planned_by_shard(self, round_id: str) -> list[list[int]]:
        """A round's question ids by shard ([] before it is planned): its queries.json when the plan's index vouches
        for it, else derived from the plan. A missing, edited or truncated queries.json costs one read of the plan,
        never a wrong answer (`verify` reports it)."""
        key, index_key = queries_key(round_id), plan_index_key(plan_key(round_id))
        if self.store.exists(key) and self.store.exists(index_key):
            raw = self.store.get_bytes(key)
            try:
                vouched = PlanIndex.model_validate_json(self.store.get_bytes(index_key)).queries_sha256
                by_shard = _BY_SHARD.validate_json(raw)
            except ValueError:
                vouched, by_shard = "", []
            if vouched == hashlib.sha256(raw).hexdigest() or (vouched is None and by_shard):  # None: before it
                return by_shard
            get_logger().warning("queries.json differs from its plan; reading the plan", uri=self.store.uri_for(key))
        if not self.store.exists(plan_key(round_id)):
            return []
        return Plan.model_validate_json(self.store.get_bytes(plan_key(round_id))).question_ids_by_shard()

    def planned_ids(self, exclude: str | None = None) -> set[int]:
        """Every question id a round other than `exclude` planned."""
        return {q for r in self.round_ids() if r != exclude for shard in self.planned_by_shard(r) for q in shard}

    def seconds_per_query(self, exclude: str | None = None) -> float | None:
        """Scoring wall time per query in the newest round whose shards recorded it (hardware and model change
        between months; last night is the best guess for tonight), or None."""
        for round_id in reversed(self.round_ids()):
            if round_id == exclude:
                continue
            seconds = rows = 0.0
            for key in self.store.list(f"rounds/{round_id}/shards/"):
                if key.endswith(".manifest.json"):
                    stats = json.loads(self.store.get_bytes(key))["stats"]
                    if "seconds" in stats and stats["rows"]:
                        seconds, rows = seconds + float(stats["seconds"]), rows + int(stats["rows"])
            if rows:
                return seconds / rows
        return None

    def acceptance(self, exclude: str | None = None) -> tuple[int, int]:
        """(scored, accepted) queries over every filtered round but `exclude`."""
        rounds = [self.round(r) for r in self.round_ids() if r != exclude]
        done = [r for r in rounds if r is not None]
        return sum(r.scored_queries for r in done), sum(r.accepted_queries for r in done)

    # Runs -------------------------------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        return sorted({k.split("/")[1] for k in self.store.list("runs/")})

    def run(self, run_id: str) -> RunSummary:
        try:
            record: RunRecord | None = read_record(self.store, run_id)
        except IntegrityError as exc:  # shown, not fatal: one damaged record must not hide every other run
            return RunSummary(run_id=run_id, status="damaged", outcome=str(exc))
        metrics_key = f"runs/{run_id}/report/metrics.json"
        report = self.store.exists(f"runs/{run_id}/report/manifest.json")
        accuracy: dict[str, float] = {}
        if report:
            policy = json.loads(self.store.get_bytes(metrics_key))["eval"]["policy"]
            accuracy = {k: float(v["accuracy"]) for k, v in policy.items()}
        return RunSummary(
            run_id=run_id,
            pipeline=record.pipeline if record else "",
            status=record.status if record else "",
            outcome=record.outcome if record else "",
            report=report,
            policy_accuracy=accuracy,
        )

    # The lease --------------------------------------------------------------------------------------------------
    def lease(self) -> str:
        """'' when nobody is publishing, else who holds the lease (and whether the holder is gone)."""
        holder = read_holder(self.store, LEASE)
        if holder is None:
            return ""
        return describe_holder(holder) + (" (gone)" if holder_gone(holder) else "")


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return first_problem(exc)
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)


def status(store: Store) -> dict[str, Any]:
    """Everything `leverplus status` shows, as plain data (its --json)."""
    catalog = Catalog(store)
    rounds = {}
    for round_id in catalog.round_ids():
        stats = catalog.round(round_id)
        rounds[round_id] = (
            {"filtered": False}
            if stats is None
            else {
                "filtered": True,
                "scored": stats.scored_queries,
                "accepted": stats.accepted_queries,
                "added": stats.added_queries,
                "version": stats.version,
            }
        )
    versions = {
        name: {"queries": v.queries, "candidates": v.candidates, "positive_ratio": v.positive_ratio,
               "round": v.round_id, "added": v.added_queries}
        for name, v in catalog.versions().items()
    }  # fmt: skip
    runs = {r: catalog.run(r).model_dump(exclude={"run_id"}) for r in catalog.run_ids()}
    if not (rounds or versions or runs or store.list("features/") or store.list("datasets/")):
        raise NotFoundError(
            f"{store.uri} holds no Lever-Plus objects (datasets, features, rounds, balanced versions, runs): "
            "is the store URI right?"
        )
    published = catalog.published()
    return {
        "store": store.uri,
        "rounds": rounds,
        "balanced_versions": versions,
        "latest": f"v{published}" if published else None,
        "pointer_lags": bool(published) and catalog.pointer() != published,
        "runs": runs,
        "unfinished_runs": [r for r, v in runs.items() if v["status"] == "running"],
        "lease": catalog.lease(),
    }
