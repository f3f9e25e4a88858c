"""The one settings model. Defaults reproduce the lab report's Balanced-V3 configuration (20 candidates per query,
2 train shots, pool 64, band 0.40-0.60, RCE 5 epochs, GRPO 30 epochs, KL beta 0.1, lr 5e-6, hard_plus_soft,
eval shots 1-4 on 1,000 val questions, max_new_tokens 5).

Precedence, highest first: explicit overrides (command-line flags) > environment (LEVERPLUS_*, nested with __)
> YAML file (--config) > defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from leverplus.errors import ConfigError
from leverplus.ids import check_id

__all__ = [
    "ENV_PREFIX",
    "NON_SETTINGS_ENV",
    "Settings",
    "credentials_env",
    "load_settings",
    "masked_overrides",
    "settings_hash",
    "settings_reference_markdown",
    "settings_to_dict",
    "settings_to_yaml",
]

ENV_PREFIX = "LEVERPLUS_"
# Environment variables read outside the settings model (before it can be loaded).
NON_SETTINGS_ENV = {
    "LEVERPLUS_LOG_FORMAT",
    "LEVERPLUS_LOG_LEVEL",
    "LEVERPLUS_PROGRESS_SECONDS",
    "LEVERPLUS_CONFIG",
    "LEVERPLUS_STEP_PROCESS",
}
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_9000_TCP_ADDR... for every Service in the namespace
# (unless enableServiceLinks is false): a Service named leverplus-minio must not break the strict settings check.
# Settings always carry "__"; service links never do.
_SERVICE_LINK = re.compile(
    r"^[A-Z0-9_]+?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$"
)

RewardMode = Literal["hard", "soft", "hard_plus_soft", "hard_plus_prob", "prob"]
REWARD_MODES: tuple[str, ...] = RewardMode.__args__  # type: ignore[attr-defined]


def _as_id(value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class _Group(BaseModel):
    # Typos in a config file must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf: a NaN checkpoint


class StoreSettings(_Group):
    uri: str = Field(
        "leverplus-store",
        description="Root of the artifact store: s3://bucket/prefix, file:///abs/path or a plain path "
        "(relative paths resolve against the working directory).",
    )
    endpoint_url: str | None = Field(
        None,
        description="S3 endpoint for MinIO or another S3-compatible server; unset uses AWS_ENDPOINT_URL or AWS.",
    )
    region: str = Field("us-east-1", description="S3 region name; MinIO accepts any.")
    access_key_id: SecretStr | None = Field(
        None, description="S3 access key; unset uses the standard AWS chain (env, profile, IRSA). Never logged."
    )
    secret_access_key: SecretStr | None = Field(
        None, description="S3 secret key; unset uses the standard AWS chain. Never logged."
    )
    max_attempts: int = Field(
        10, ge=1, le=50, description="S3 attempts per request (exponential backoff), to ride out restarts."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to wait for an S3 connection.")
    multipart_threshold_mb: int = Field(
        64, ge=5, description="Files larger than this (MiB) are uploaded in parts; S3 needs parts >= 5 MiB."
    )


class DataSettings(_Group):
    root: str | None = Field(
        None,
        description="VQAv2 dataset root URI (official file names). Unset: <store.uri>/datasets/<data.name>.",
    )
    name: str = Field("vqav2", description="Dataset name under the store's datasets/ prefix.")

    @field_validator("name")
    @classmethod
    def _name_is_an_id(cls, name: str) -> str:
        return _as_id(name, "data name")

    train_split: Literal["train", "val"] = Field(
        "train", description="Split that provides ICDs and RL queries (VQAv2 train2014)."
    )
    eval_split: Literal["train", "val"] = Field(
        "val", description="Split that provides evaluation questions (VQAv2 val2014)."
    )
    check_images: bool = Field(False, description="Verify every referenced image exists when loading a split.")
    synthesize_if_missing: bool = Field(
        False, description="`leverplus run`: write the synthetic world at the data root when it has no dataset."
    )
    synth_train: int = Field(3000, ge=1, description="Synthetic world: train questions (3 per image).")
    synth_val: int = Field(600, ge=1, description="Synthetic world: val questions.")
    synth_seed: int = Field(0, description="Synthetic world: seed (same seed, byte-identical files).")


class LVLMSettings(_Group):
    backend: Literal["hf", "sim"] = Field(
        "hf", description="hf: a transformers image-text-to-text model; sim: the simulated LVLM (synthetic world)."
    )
    model: str = Field(
        "Qwen/Qwen2.5-VL-3B-Instruct", description="Hub id, local directory or s3:// prefix of the LVLM."
    )
    max_new_tokens: int = Field(5, ge=1, description="Generated tokens per answer (VQAv2 answers are short).")
    num_beams: int = Field(3, ge=1, description="Beam width; 1 is greedy. The lab evaluation used 3.")
    batch_size: int = Field(20, ge=1, description="Prompts per forward pass; halved automatically on OOM.")
    max_pixels: int = Field(
        256 * 28 * 28,
        ge=28 * 28,
        description="Pixel cap per image: one LLM token per 28x28 pixels, so 256*28*28 is about 256 tokens. "
        "The processor's own default (16384*28*28) is a common cause of OOM.",
    )
    min_pixels: int = Field(4 * 28 * 28, ge=28 * 28, description="Pixel floor per image.")
    vision_cache_images: int = Field(
        2048,
        ge=1,
        description="Images whose vision-encoder outputs stay cached (LRU). At 256 tokens an image costs about "
        "1 MB of GPU memory with the 3B model.",
    )
    cache_dir: str = Field(
        "~/.cache/leverplus/models", description="Local folder an s3:// lvlm.model is synced into, once per node."
    )
    sim_seed: int = Field(0, description="Seed of the simulated LVLM's answers (backend sim).")

    @model_validator(mode="after")
    def _pixels_ordered(self) -> LVLMSettings:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})")
        return self


class FeatureSettings(_Group):
    encoder: Literal["clip", "simple"] = Field(
        "clip", description="clip: a CLIPModel; simple: a deterministic content-aware encoder for synthetic data."
    )
    model: str = Field("openai/clip-vit-base-patch32", description="CLIP model id or directory (encoder clip).")
    batch_size: int = Field(64, ge=1, description="Images per encoder batch.")


class PolicySettings(_Group):
    encoder: Literal["frozen", "clip-lora"] = Field(
        "frozen",
        description="What the selector sees. frozen: the stored features of features.encoder. clip-lora: CLIP's "
        "image and text towers (features.model) inside the policy, their attention projections fine-tuned with LoRA "
        "adapters (peft) in SFT, RCE and GRPO; checkpoints hold the adapters and the head, never the base weights.",
    )
    prior: bool = Field(
        True,
        description="Give the selector MMR as a learned residual (a·cos(query, item) − b·max cos(item, picked) added "
        "to each step's scores, starting at MMR): training departs from the strong heuristic instead of first "
        "rediscovering similarity through its projections. Checkpoints record it.",
    )
    lora_rank: int = Field(8, ge=1, description="Rank of the clip-lora adapters.")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA alpha of the clip-lora adapters (scale alpha / rank).")
    image_cache_images: int = Field(
        16384,
        ge=1,
        description="clip-lora: images kept decoded and cropped in memory (uint8, least recently used out): 150 KB "
        "each at 224 px, so the default is ~2.4 GB; VQAv2 train's 82,783 images take ~12 GB, which a GPU pod can "
        "hold to decode each image once per training step's pod instead of once per epoch.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Arithmetic of the clip-lora towers (they run on run.device; a frozen-encoder policy is small "
        "and always runs on cpu). bf16: autocast, with weights, adapters and their gradients kept fp32 (no loss "
        "scaling needed, unlike fp16). auto: bf16 on cuda, fp32 on cpu.",
    )


class PoolSettings(_Group):
    sampler: Literal["random", "similarity", "stratified", "retrieved"] = Field(
        "retrieved",
        description="How each query's candidate pool is drawn from the train split. retrieved (the two-stage design "
        "a practitioner uses): the top of the similarity ranking, plus pool.diversity_share from the rest. "
        "stratified (an ablation): a few from each similarity decile, as the lab's RL groups did; its pools miss "
        "most of the best examples, so global retrieval beats any selector confined to them.",
    )
    diversity_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="retrieved sampler: share of the pool drawn (stratified) from beyond the top ranks, so a "
        "selector can reach items that similarity alone ranks low.",
    )
    size: int = Field(64, ge=1, description="ICDs in each query's candidate pool (the lab's K was 64 for SFT).")
    seed: int = Field(0, description="Seed of the random and stratified samplers.")


class RLSettings(_Group):
    candidates_per_query: int = Field(20, ge=2, description="Candidate ICD sequences scored per RL query.")
    train_shots: int = Field(2, ge=1, description="ICDs in each candidate sequence.")
    policy_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of candidates sampled from the policy; the rest are uniform random."
    )
    heuristic_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of candidates from the strong heuristics and their neighbours: the pool's similarity "
        "top-k, MMR at several λ, and their one-item swaps and reorderings, so a group compares good with better "
        "instead of relevant with random. policy_fraction + heuristic_fraction <= 1; the rest are uniform random.",
    )
    policy_temperature: float = Field(
        1.0, gt=0, description="Softmax temperature of the policy's candidate samples (< 1: closer to its greedy)."
    )
    hard_threshold: float = Field(
        0.0, ge=0, lt=1, description="A candidate is correct when its VQA accuracy exceeds this (lab: > 0)."
    )
    min_pos_ratio: float = Field(0.40, ge=0, le=1, description="Balanced filter: lowest positive share kept.")
    max_pos_ratio: float = Field(0.60, ge=0, le=1, description="Balanced filter: highest positive share kept.")
    reward_mode: RewardMode = Field(
        "hard_plus_soft", description="Reward computed from stored candidate fields: " + ", ".join(REWARD_MODES)
    )
    target_new_queries: int = Field(
        1000, ge=1, description="Balanced queries a round aims to add; the plan sizes itself from the acceptance rate."
    )
    prior_acceptance_rate: float = Field(
        0.35, gt=0, le=1, description="Acceptance rate assumed before any round has been scored."
    )
    shard_size: int = Field(
        50, ge=1, description="Queries per shard of the scoring, InfoScore and evaluation fan-outs (a pod each)."
    )
    shard_minutes: float | None = Field(
        None,
        gt=0,
        description="Target minutes of scoring per shard of an RL round (a GPU pod each): the plan sizes shards from "
        "the seconds per query the newest scored round measured, so 10k and 100k new queries both fan out "
        "sensibly; rl.shard_size until a round has been scored. Unset: rl.shard_size queries per shard.",
    )
    export_merged: bool = Field(
        False,
        description="Write the lab's interchange file rl-data/balanced/rl_data_balanced_merged.json with every "
        "balanced version. Off: `leverplus export` writes it on demand (it holds the whole set, so writing it "
        "nightly would cost as much as the set).",
    )
    rce_epochs: int = Field(5, ge=0, description="RCE epochs (lab: 5).")
    rce_lr: float = Field(1e-4, gt=0, description="RCE AdamW learning rate (lab: 1e-4).")
    rce_tau_start: float = Field(2.0, gt=0, description="RCE softmax temperature at the first step.")
    rce_tau_end: float = Field(0.5, gt=0, description="RCE softmax temperature at the last step (linear).")
    grpo_epochs: int = Field(30, ge=0, description="GRPO epochs (lab: 30).")
    grpo_lr: float = Field(5e-6, gt=0, description="GRPO learning rate (lab: 5e-6).")
    kl_beta: float = Field(0.1, ge=0, description="GRPO KL penalty weight towards the starting policy (lab: 0.1).")
    clip_eps: float = Field(0.2, gt=0, lt=1, description="GRPO ratio clip epsilon.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient-norm clip for SFT, RCE and GRPO.")
    batch_queries: int = Field(16, ge=1, description="Queries (groups) per optimiser step in RCE and GRPO.")
    seeds: int = Field(
        1,
        ge=1,
        le=10,
        description="Training seeds of RCE -> GRPO. Seed 0 is the run's policy; seeds s >= 1 train from the same SFT "
        "policy and data with run.seed + s, are evaluated as policy-seed<s>, and give the report its seed spread.",
    )
    retrain_growth: float = Field(
        0.2,
        ge=0,
        description="data-growth retrains once the balanced set has grown by this fraction since the "
        "data version the newest trained policy used.",
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> RLSettings:
        if self.min_pos_ratio > self.max_pos_ratio:
            raise ValueError(f"min_pos_ratio ({self.min_pos_ratio}) exceeds max_pos_ratio ({self.max_pos_ratio})")
        if self.policy_fraction + self.heuristic_fraction > 1:
            raise ValueError(
                f"policy_fraction ({self.policy_fraction}) + heuristic_fraction ({self.heuristic_fraction}) exceeds 1"
            )
        return self


class SFTSettings(_Group):
    anchors: int = Field(5000, ge=1, description="Train queries whose InfoScore beams become SFT data.")
    beam_width: int = Field(5, ge=1, description="InfoScore beam width.")
    beam_length: int = Field(2, ge=1, description="ICDs per beam sequence.")
    candidates: int = Field(64, ge=1, description="Random pool items tried per anchor and beam step.")
    epochs: int = Field(20, ge=1, description="Selector SFT epochs.")
    lr: float = Field(1e-4, gt=0, description="Selector SFT learning rate.")
    batch_size: int = Field(64, ge=1, description="Sequences per SFT step.")


class EvalSettings(_Group):
    shots: list[int] = Field([1, 2, 3, 4], min_length=1, description="Shot counts evaluated.")
    num_questions: int = Field(1000, ge=1, description="Evaluation questions from the eval split.")
    selection: Literal["first", "sample"] = Field(
        "first", description="first: the lowest question_ids (the lab's protocol); sample: a seeded sample."
    )
    seed: int = Field(0, description="Seed of the question sample, random baseline and bootstrap.")
    metric_mode: Literal["official", "lenient"] = Field(
        "official", description="official: the VQAv2 evaluator's rules; lenient: always normalise answers."
    )
    bootstrap_samples: int = Field(2000, ge=100, description="Bootstrap resamples for intervals and paired tests.")
    mmr_lambda: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The mmr baseline's trade-off: λ·relevance − (1−λ)·redundancy (1 is similarity top-k). Choose it "
        "on a dev split of train questions (benchmarks/selector_study.py), never on eval questions.",
    )

    @field_validator("shots")
    @classmethod
    def _shots_positive_distinct(cls, shots: list[int]) -> list[int]:
        if any(k < 0 for k in shots):
            raise ValueError(f"shot counts must be >= 0, got {shots}")
        if len(set(shots)) != len(shots):
            raise ValueError(f"shot counts must be distinct, got {shots}")
        return sorted(shots)


class RunSettings(_Group):
    run_id: str | None = Field(None, description="Run identifier; unset: the next run-NNNN in the store.")

    @field_validator("run_id")
    @classmethod
    def _run_id_is_an_id(cls, run_id: str | None) -> str | None:
        return None if run_id is None else _as_id(run_id, "run id")

    seed: int = Field(0, description="Global seed for training and sampling.")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="torch device of the LVLM, the CLIP encoder and a clip-lora policy: auto picks cuda when "
        "available, else cpu. The LVLM runs in bf16 on cuda, fp32 on cpu.",
    )


class Settings(BaseSettings):
    """Every tunable of the pipeline. `leverplus config show` prints the effective values."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    store: StoreSettings = Field(default_factory=StoreSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    lvlm: LVLMSettings = Field(default_factory=LVLMSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    rl: RLSettings = Field(default_factory=RLSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    run: RunSettings = Field(default_factory=RunSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _YAML_FILE.get()
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    def data_root(self) -> str:
        """The dataset root URI: explicit, or the store's datasets/<name>."""
        if self.data.root:
            return self.data.root
        return self.store.uri.rstrip("/") + "/datasets/" + self.data.name


_YAML_FILE: ContextVar[Path | None] = ContextVar("leverplus_yaml_file", default=None)


@contextmanager
def _yaml_source(path: Path | None) -> Iterator[None]:
    token = _YAML_FILE.set(path)
    try:
        yield
    finally:
        _YAML_FILE.reset(token)


def _check_yaml_file(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from exc
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting groups, got {type(content).__name__}")


def _check_env() -> None:
    groups = set(Settings.model_fields)
    for name in os.environ:
        if not name.startswith(ENV_PREFIX) or name in NON_SETTINGS_ENV:
            continue
        if "__" not in name and _SERVICE_LINK.match(name):
            continue
        group = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if group not in groups:
            raise ConfigError(f"environment variable {name}: unknown settings group {group!r}")


def _suggest(loc: tuple) -> str:
    """' (did you mean rl.kl_beta?)' for a misspelt group or field."""
    import difflib

    names = list(Settings.model_fields)
    if len(loc) >= 2 and loc[0] in Settings.model_fields:
        names = [f"{loc[0]}.{f}" for f in Settings.model_fields[loc[0]].annotation.model_fields]  # type: ignore[union-attr]
    typed = ".".join(str(part) for part in loc[:2])
    close = difflib.get_close_matches(typed, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "settings"
    hint = _suggest(first["loc"]) if first["type"] == "extra_forbidden" else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {field} from {origin}: {first['msg']}{hint}{more}"


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings from defaults, an optional YAML file, LEVERPLUS_* env and explicit overrides.

    overrides maps dotted names to values, e.g. {"lvlm.backend": "sim"}. Any invalid value raises ConfigError
    naming the field.
    """
    if config_file is None and os.environ.get("LEVERPLUS_CONFIG"):
        config_file = os.environ["LEVERPLUS_CONFIG"]
    path = Path(config_file) if config_file is not None else None
    if path is not None:
        _check_yaml_file(path)
    _check_env()
    origin = f"defaults, {path}, env" if path else "defaults and env"
    origin += ", --set" if overrides else ""
    try:
        with _yaml_source(path):
            settings = Settings(**_nest(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from exc
    return settings


def load_recorded_settings(recorded: bytes, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from a run's recorded settings.yaml (its bytes, as the store holds them) with overrides on top."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "settings.yaml"
        path.write_bytes(recorded)
        return load_settings(path, overrides)


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        group, _, field = key.partition(".")
        if not field:
            raise ConfigError(f"override {key!r} must be group.field")
        nested.setdefault(group, {})[field] = value
    return nested


def _secret_fields() -> list[tuple[str, str]]:
    return [
        (group, name)
        for group, info in Settings.model_fields.items()
        for name, field in info.annotation.model_fields.items()  # type: ignore[union-attr]
        if "SecretStr" in str(field.annotation)
    ]


def settings_to_dict(settings: Settings, *, secrets: Literal["mask", "omit"] = "mask") -> dict[str, Any]:
    """Plain data for YAML/JSON. Secrets are masked ("***" where set) or omitted; their values are never written."""
    data = settings.model_dump(mode="json")
    for group, name in _secret_fields():
        if secrets == "omit":
            del data[group][name]
        elif data[group][name] is not None:
            data[group][name] = "***"
    return data


def masked_overrides(overrides: dict[str, Any]) -> dict[str, str]:
    """Dotted overrides as a log line may show them: a credential's value is "***"."""
    secret = {f"{group}.{name}" for group, name in _secret_fields()}
    return {k: "***" if k.strip() in secret else str(v) for k, v in overrides.items()}


def settings_to_yaml(settings: Settings, secrets: Literal["mask", "omit"] = "mask") -> str:
    return yaml.safe_dump(settings_to_dict(settings, secrets=secrets), sort_keys=False)


def credentials_env(settings: Settings) -> dict[str, str]:
    """The credentials the settings hold, as the LEVERPLUS_* variables a step process reads: they follow the other
    settings into every step through the environment, never through a file (the settings file omits them)."""
    env = {}
    for group, name in _secret_fields():
        value = getattr(getattr(settings, group), name)
        if value is not None:
            env[f"{ENV_PREFIX}{group.upper()}__{name.upper()}"] = value.get_secret_value()
    return env


def settings_hash(settings: Settings) -> str:
    """sha256 of the canonical settings without credentials: a new key is not a new configuration."""
    data = settings_to_dict(settings, secrets="omit")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def settings_reference_markdown() -> str:
    """A Markdown table of every setting: env variable, default and meaning (docs/configuration.md)."""
    rows = ["| setting | env | default | meaning |", "|---|---|---|---|"]
    for group, info in Settings.model_fields.items():
        model = info.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            default = field.get_default(call_default_factory=True)
            shown = "unset" if default is None else json.dumps(default)
            env = f"{ENV_PREFIX}{group.upper()}__{name.upper()}"
            help_text = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{group}.{name}` | `{env}` | `{shown}` | {help_text} |")
    return "\n".join(rows) + "\n"
