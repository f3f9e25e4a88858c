"""Policy checkpoints: model.safetensors plus config.json (architecture and provenance) under a store prefix.

Loading is strict: a missing or unexpected key, a shape mismatch, or a file whose sha256 differs from the one
recorded at save time is an error. Checkpoints are never unpickled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from leverplus import __version__
from leverplus.errors import IntegrityError, NotFoundError
from leverplus.policy.network import PointerSelector, PolicyConfig
from leverplus.store import Store

__all__ = ["load_policy", "save_policy"]

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def save_policy(net: PointerSelector, store: Store, prefix: str, provenance: dict[str, Any]) -> str:
    """Write the checkpoint under store/prefix (weights first, config last: a prefix with a config is complete).
    Returns the checkpoint's URI."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    info = store.put_bytes(f"{prefix}/{MODEL_FILE}", save(state))
    config = {
        "policy": net.policy_config.to_dict(),
        "model_sha256": info.sha256,
        "code_version": __version__,
        **provenance,
    }
    store.put_bytes(f"{prefix}/{CONFIG_FILE}", json.dumps(config, indent=2, sort_keys=True).encode())
    return store.uri_for(prefix)


def load_policy(store: Store) -> tuple[PointerSelector, dict[str, Any]]:
    """Load the checkpoint rooted at store (open_store(checkpoint_uri))."""
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
    net = PointerSelector(policy_config)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise IntegrityError(f"{model_uri}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise IntegrityError(
                f"{model_uri}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    net.load_state_dict(state, strict=True)
    return net.eval(), config
