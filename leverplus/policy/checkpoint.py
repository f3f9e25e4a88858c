"""Policy checkpoints: model.safetensors plus config.json (architecture and provenance) under a store prefix.

Loading is strict: a missing or unexpected key, a shape mismatch, or a file whose sha256 differs from the one
recorded at save time is an error. Checkpoints are never unpickled.

A `clip-lora` policy's file holds the head and the adapters (`adapter.<peft key>`), never the base CLIP weights:
config.json names the base model and the sha256 of its weights, and loading refuses a base that differs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from leverplus import __version__
from leverplus.errors import IntegrityError, NotFoundError
from leverplus.policy.network import PointerSelector, PolicyConfig, TowerView
from leverplus.policy.strict import check_state
from leverplus.policy.towers import ClipTowers
from leverplus.store import Store

__all__ = ["load_policy", "save_policy"]

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def save_policy(net: PointerSelector, store: Store, prefix: str, provenance: dict[str, Any]) -> str:
    """Write the checkpoint under store/prefix (weights first, config last: a prefix with a config is complete).
    Returns the checkpoint's URI."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.head_state().items()}
    if net.towers is not None:
        state |= {f"{ADAPTER_PREFIX}{k}": v for k, v in net.towers.adapter_state().items()}
    info = store.put_bytes(f"{prefix}/{MODEL_FILE}", save(state))
    config = {
        "policy": net.policy_config.to_dict(),
        "model_sha256": info.sha256,
        "code_version": __version__,
        **({"towers": tower_config(net.towers)} if net.towers is not None else {}),
        **provenance,
    }
    store.put_bytes(f"{prefix}/{CONFIG_FILE}", json.dumps(config, indent=2, sort_keys=True).encode())
    return store.uri_for(prefix)


ADAPTER_PREFIX = "adapter."


def tower_config(towers: ClipTowers) -> dict[str, Any]:
    return {"encoder": "clip-lora", "base_model": towers.base_id, "base_sha256": towers.base_sha256,
            "lora": towers.lora, "trainable_parameters": towers.trainable_parameters()}  # fmt: skip


def _towers(config: dict[str, Any], clip_model: str | None, uri: str) -> ClipTowers:
    """The base the adapters were trained on: `clip_model` (this machine's copy) or the recorded id, checked."""
    from leverplus.policy.towers import load_towers

    recorded = config["towers"]
    towers = load_towers(clip_model or recorded["base_model"], recorded["lora"]["rank"], recorded["lora"]["alpha"])
    _check_base(recorded, towers, uri)
    return towers


def _check_base(recorded: dict[str, Any], towers: ClipTowers, uri: str) -> None:
    if towers.base_sha256 != recorded["base_sha256"]:
        raise IntegrityError(
            f"{uri}: its adapters were trained on base weights {recorded['base_sha256'][:12]} "
            f"({recorded['base_model']}), {towers.base_id} has {towers.base_sha256[:12]}: load it with that base"
        )


def _shareable(config: dict[str, Any], towers: ClipTowers, uri: str) -> bool:
    """Whether a checkpoint's adapters can sit beside `towers`' own: trained on the same base weights (another base
    is the same error as on load), with the same rank, alpha and targets."""
    recorded = config.get("towers")
    if recorded is None:
        return False
    _check_base(recorded, towers, uri)
    return recorded["lora"] == towers.lora


def load_policy(
    store: Store, clip_model: str | None = None, share: ClipTowers | None = None
) -> tuple[PointerSelector, dict[str, Any]]:
    """Load the checkpoint rooted at store (open_store(checkpoint_uri)); a clip-lora policy loads its base from
    `clip_model` (default: the id it recorded) and checks it is the one its adapters were trained on. With `share`
    (another loaded policy's towers), a clip-lora policy on the same base and adapter shape becomes a view of
    those towers with its adapters as a frozen second adapter, instead of loading the base again."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    uri = store.uri_for(CONFIG_FILE)
    try:
        config = json.loads(store.get_bytes(CONFIG_FILE))
        policy_config = PolicyConfig(**config["policy"])
    except NotFoundError:
        raise NotFoundError(f"{uri} does not exist: no policy checkpoint at {store.uri}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{uri}: not a valid policy config ({exc})") from exc
    raw = store.get_bytes(MODEL_FILE)
    model_uri = store.uri_for(MODEL_FILE)
    try:
        state = load(raw)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{model_uri}: not a safetensors file ({exc})") from exc
    if not config.get("model_sha256"):  # strict means strict: unverifiable weights are not loaded
        raise IntegrityError(f"{uri}: records no model_sha256, so {MODEL_FILE} cannot be verified; re-save it")
    if hashlib.sha256(raw).hexdigest() != config["model_sha256"]:
        raise IntegrityError(f"{model_uri}: sha256 differs from the one recorded in {CONFIG_FILE}")
    adapters = {k.removeprefix(ADAPTER_PREFIX): state.pop(k) for k in list(state) if k.startswith(ADAPTER_PREFIX)}
    if share is not None and _shareable(config, share, uri):
        check_state(PointerSelector(policy_config).head_state(), state, model_uri)
        name = f"checkpoint-{len(share.clip.peft_config)}"
        share.add_frozen_adapter(name, adapters, model_uri)
        return TowerView(policy_config, state, share, name).eval(), config
    towers = _towers(config, clip_model, uri) if "towers" in config else None
    net = PointerSelector(policy_config, towers)
    if towers is not None:
        towers.load_adapter_state(adapters, model_uri)
    elif adapters:
        raise IntegrityError(f"{model_uri}: holds adapters but {CONFIG_FILE} names no towers")
    check_state(net.head_state(), state, model_uri)  # strict on the head; the towers hold the base and adapters
    net.load_state_dict(state, strict=False)
    return net.eval(), config
