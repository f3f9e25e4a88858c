"""The selector policy: network, losses, rewards, checkpoints and training loops."""

from leverplus.policy.checkpoint import load_policy, save_policy
from leverplus.policy.network import PointerSelector, PolicyConfig

__all__ = ["PointerSelector", "PolicyConfig", "load_policy", "save_policy"]
