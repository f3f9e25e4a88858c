"""Lever-Plus: balanced RL data, selector training and VQAv2 evaluation as one pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leverplus")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
