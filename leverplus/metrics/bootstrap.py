"""Bootstrap statistics over per-question accuracies: a 95 % interval for one system, and a paired test of two
systems answering the same questions (resampling question indices jointly keeps the pairing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedResult", "bootstrap_ci", "paired_bootstrap"]


def _resample_indices(n: int, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n))  # (samples, n)


def bootstrap_ci(
    scores: Sequence[float], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of scores (same units as scores)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one score")
    means = values[_resample_indices(values.size, samples, seed)].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedResult:
    """Mean difference a - b, its percentile interval, and a two-sided bootstrap p-value."""

    delta: float
    ci95: tuple[float, float]
    p_value: float

    @property
    def significant(self) -> bool:
        lo, hi = self.ci95
        return lo > 0 or hi < 0


def paired_bootstrap(a: Sequence[float], b: Sequence[float], samples: int = 2000, seed: int = 0) -> PairedResult:
    """Paired bootstrap of mean(a) - mean(b) over the same questions."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or len(a) != len(b) or diff.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length non-empty score lists, got {len(a)} and {len(b)}")
    deltas = diff[_resample_indices(diff.size, samples, seed)].mean(axis=1)
    lo, hi = np.quantile(deltas, [0.025, 0.975])
    # Two-sided p: how often the resampled delta lands on the other side of zero, doubled.
    tail = min(np.mean(deltas <= 0), np.mean(deltas >= 0))
    return PairedResult(delta=float(diff.mean()), ci95=(float(lo), float(hi)), p_value=float(min(1.0, 2 * tail)))
