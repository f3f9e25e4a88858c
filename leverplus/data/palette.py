"""The synthetic world's colours: what the world draws with and what the `simple` encoder looks for. A module of
its own, so the encoder needs nothing of the world generator."""

from __future__ import annotations

__all__ = ["COLORS"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (148, 60, 189),
    "orange": (255, 127, 14),
}
