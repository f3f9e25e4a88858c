"""What every stage shares: settings, the store, bound logging, and cached data, features and LVLM.

The store layout is in leverplus.stages.layout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from leverplus import __version__
from leverplus.config import Settings, settings_hash
from leverplus.data import VQASplit, load_split
from leverplus.errors import ConfigError, DataError, IntegrityError, first_problem
from leverplus.features import FeatureTable
from leverplus.log import bind, get_logger
from leverplus.lvlm.prompt import PROMPT_HASH
from leverplus.records import Manifest, Plan, PlanIndex, PlanShard, canonical_json
from leverplus.store import Store, open_store, store_or_full_uri

__all__ = ["StageContext"]


@dataclass
class StageContext:
    settings: Settings
    stage: str
    _features: dict[tuple[str, str], FeatureTable] = field(default_factory=dict)
    _splits: dict[str, VQASplit] = field(default_factory=dict)
    _banks: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bind(stage=self.stage)
        self.log = get_logger()

    @cached_property
    def store(self) -> Store:
        return open_store(self.settings.store.uri, self.settings.store)

    @cached_property
    def settings_hash(self) -> str:
        return settings_hash(self.settings)

    def split(self, name: str) -> VQASplit:
        if name not in self._splits:
            root = open_store(self.settings.data_root(), self.settings.store)
            self._splits[name] = load_split(root, name, check_images=self.settings.data.check_images)
        return self._splits[name]

    def image_of(self, *splits: str) -> dict[int, int]:
        """question_id -> image_id over the given splits and the train split: what pools and retrieval exclude."""
        names = {*splits, self.settings.data.train_split}
        return {r.question_id: r.image_id for name in sorted(names) for r in self.split(name)}

    def features(self, split: str, encoder: str | None = None) -> FeatureTable:
        encoder = encoder or self.settings.features.encoder
        if (encoder, split) not in self._features:
            from leverplus.features.table import feature_key

            if not self.store.exists(feature_key(encoder, split)):
                raise DataError(
                    f"{self.store.uri_for(feature_key(encoder, split))} does not exist: run `leverplus features` first"
                )
            self._features[encoder, split] = FeatureTable.load(self.store, encoder, split)
        return self._features[encoder, split]

    def new_policy(self) -> Any:
        """A fresh selector for SFT: on the stored features (policy.encoder frozen), or on CLIP towers with zero
        LoRA adapters (clip-lora; the base is features.model)."""
        from leverplus.policy import PointerSelector, PolicyConfig
        from leverplus.policy.towers import load_towers

        p = self.settings.policy
        if p.encoder == "frozen":
            dim = self.features(self.settings.data.train_split).dim
            return PointerSelector(PolicyConfig(feature_dim=dim, prior=p.prior))
        towers = load_towers(self.settings.features.model, p.lora_rank, p.lora_alpha)
        return self._place(PointerSelector(PolicyConfig(feature_dim=towers.dim, prior=p.prior), towers))

    def load_policy(self, uri_or_key: str, share: Any = None) -> tuple[Any, dict[str, Any]]:
        """A policy checkpoint; a clip-lora one on this machine's copy of its base (features.model), checked. With
        `share` (a loaded clip-lora policy's towers), it reads those towers instead of loading the base again."""
        from leverplus.policy import load_policy

        store = self.checkpoint_store(uri_or_key)
        net, config = load_policy(store, clip_model=self.settings.features.model, share=share)
        return self._place(net), config

    def _place(self, net: Any) -> Any:
        """A clip-lora policy on run.device with policy.precision; a frozen-encoder one stays on cpu (its ~10^5
        parameters gain nothing from a GPU, and cpu keeps its runs bit-identical on every machine)."""
        if net.towers is None:
            return net
        from leverplus.device import autocast_dtype, precision_name, torch_device

        device = torch_device(self.settings.run.device)
        net.towers.autocast = autocast_dtype(self.settings.policy.precision, device)
        self.log.info("policy placed", device=device, precision=precision_name(net.towers.autocast))
        net.towers.to(device)  # a view's towers are not its submodule (policy/network.py TowerView)
        return net.to(device)

    def policy_inputs(self, net: Any, split: str) -> FeatureTable | Any:
        """What `net` reads for a split's questions: the stored features, or (clip-lora) its towers' inputs."""
        if net.towers is None:
            return self.features(split)
        if split not in self._banks:
            from leverplus.policy.bank import InputBank
            from leverplus.policy.towers import load_processor

            processor, cached = load_processor(net.towers.base_id), self.settings.policy.image_cache_images
            self._banks[split] = InputBank(self.split(split), processor, max_images=cached)
        return self._banks[split]

    @cached_property
    def lvlm(self) -> Any:
        """The configured LVLM: the simulator perceives through the `simple` features of the splits that have them;
        a transformers model loads images through this context's splits."""
        if self.settings.lvlm.backend == "sim":
            from leverplus.features.table import feature_key
            from leverplus.lvlm.sim import SimLVLM

            have = [s for s in ("train", "val") if self.store.exists(feature_key("simple", s))]
            train = self.split(self.settings.data.train_split)
            return SimLVLM([self.features(s, "simple") for s in have], train, seed=self.settings.lvlm.sim_seed)
        from leverplus.device import torch_device
        from leverplus.lvlm.hf import load_hf

        def load_image(record: Any) -> Any:
            return self.split(record.split).load_image(record)

        return load_hf(self.settings.lvlm, load_image, torch_device(self.settings.run.device), self.settings.store)

    def checkpoint_store(self, uri_or_key: str) -> Store:
        """A checkpoint given as a full URI (scheme:// or absolute path) or as a key inside the store."""
        return open_store(store_or_full_uri(self.store, uri_or_key), self.settings.store)

    def read_plan(self, key: str) -> Plan:
        return self.parse(Plan, self.store.get_bytes(key), key, "a valid plan")

    def read_verified(self, key: str, manifest_key: str) -> tuple[bytes, Manifest]:
        """An object's bytes checked against the sha256 its manifest records under the object's file name; a
        missing manifest or a truncated or altered object is an IntegrityError naming it."""
        if not self.store.exists(manifest_key):
            raise IntegrityError(f"{self.store.uri_for(key)} has no manifest ({manifest_key} is missing)")
        try:
            manifest = Manifest.model_validate_json(self.store.get_bytes(manifest_key))
        except ValueError as exc:
            raise IntegrityError(f"{self.store.uri_for(manifest_key)}: not a readable manifest") from exc
        raw = self.store.get_bytes(key)
        if manifest.outputs.get(key.rsplit("/", 1)[-1]) != hashlib.sha256(raw).hexdigest():
            raise IntegrityError(f"{self.store.uri_for(key)}: sha256 differs from its manifest (truncated or altered)")
        return raw, manifest

    def plan_shard(self, plan_key: str, shard: int) -> PlanShard:
        """One shard of a plan, with the plan's header: its part (stages/layout.py plan_part_key), checked against
        the plan's index, or where a plan has no index (written before parts existed, or being re-planned) the
        plan itself. A shard id the plan does not have is an error."""
        from leverplus.stages.layout import plan_index_key, plan_part_key

        index_key = plan_index_key(plan_key)
        if not self.store.exists(index_key):
            plan = self.read_plan(plan_key)
            self._check_shard(plan_key, shard, len(plan.shards))
            return PlanShard.of(plan, shard)
        index = self.parse(PlanIndex, self.store.get_bytes(index_key), index_key, "a plan index")
        self._check_shard(plan_key, shard, len(index.shards))
        key = plan_part_key(plan_key, shard)
        raw = self.store.get_bytes(key)
        if hashlib.sha256(raw).hexdigest() != index.shards[shard]:
            where = self.store.uri_for(index_key)
            raise IntegrityError(f"{self.store.uri_for(key)}: sha256 differs from {where} (truncated or altered)")
        return self.parse(PlanShard, raw, key, "a plan shard")

    def _check_shard(self, plan_key: str, shard: int, shards: int) -> None:
        if not 0 <= shard < shards:
            raise ConfigError(f"shard {shard} is not in {self.store.uri_for(plan_key)} (shards 0..{shards - 1})")

    def parse(self, record: Any, raw: bytes, key: str, what: str) -> Any:
        """A record parsed from an object's bytes; a DataError naming the object and the first bad field."""
        try:
            return record.model_validate_json(raw)
        except ValidationError as exc:
            raise DataError(f"{self.store.uri_for(key)}: not {what} ({first_problem(exc)})") from exc

    def manifest(self, kind: str, **fields: Any) -> Manifest:
        return Manifest(
            kind=kind, settings_hash=self.settings_hash, prompt_hash=PROMPT_HASH, code_version=__version__, **fields
        )

    def put_json(self, key: str, obj: Any) -> str:
        return self.store.put_bytes(key, canonical_json(obj)).sha256

    def put_jsonl(self, key: str, rows: list[Any]) -> str:
        return self.store.put_bytes(key, b"".join(canonical_json(r) + b"\n" for r in rows)).sha256
