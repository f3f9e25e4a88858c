"""Bootstrap statistics over per-question accuracies: a 95 % interval for one system, and a paired test of two
systems answering the same questions (resampling question indices jointly keeps the pairing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedResult", "bootstrap_ci", "holm_paired", "paired_bootstrap"]


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
    """Mean difference a - b over the same questions, its percentile interval (Holm-corrected when it comes from
    `holm_paired`: the level is 1 - alpha / (tests left) at its step), a two-sided bootstrap p-value, its Holm
    adjustment, and the verdict decided on the corrected interval."""

    delta: float
    ci95: tuple[float, float]
    p_value: float
    p_holm: float
    significant: bool
    level: float = 0.95


def _paired_deltas(a: Mapping[int, float], b: Mapping[int, float], samples: int, seed: int) -> tuple[float, np.ndarray]:
    if not a or set(a) != set(b):
        only = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"a paired test needs the same non-empty question ids on both sides; differing: {only}")
    ids = sorted(a)
    diff = np.array([a[i] - b[i] for i in ids], dtype=np.float64)
    return float(diff.mean()), diff[_resample_indices(diff.size, samples, seed)].mean(axis=1)


def _p_value(deltas: np.ndarray) -> float:
    # Two-sided p: how often the resampled delta lands on the other side of zero, doubled.
    return float(min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0))))


def paired_bootstrap(
    a: Mapping[int, float], b: Mapping[int, float], samples: int = 2000, seed: int = 0
) -> PairedResult:
    """Paired bootstrap of mean(a) - mean(b), a and b keyed by question_id (identical ids required)."""
    return holm_paired({"": (a, b)}, samples, seed)[""]


def holm_paired(
    pairs: Mapping[str, tuple[Mapping[int, float], Mapping[int, float]]],
    samples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, PairedResult]:
    """Paired bootstraps of a family of comparisons (e.g. one per shot count), Holm-corrected: sorted by p-value,
    the j-th test (0-based) of m is judged on its interval at level 1 - alpha / (m - j), and once one is within
    noise every later one is too (step-down)."""
    found = {name: _paired_deltas(a, b, samples, seed) for name, (a, b) in pairs.items()}
    p = {name: _p_value(deltas) for name, (_, deltas) in found.items()}
    m, results, rejecting, running = len(found), {}, True, 0.0
    for j, name in enumerate(sorted(found, key=lambda n: (p[n], n))):
        delta, deltas = found[name]
        level_alpha = alpha / (m - j)
        lo, hi = np.quantile(deltas, [level_alpha / 2, 1 - level_alpha / 2])
        rejecting = rejecting and bool(lo > 0 or hi < 0)
        running = max(running, min(1.0, (m - j) * p[name]))
        results[name] = PairedResult(
            delta=delta,
            ci95=(float(lo), float(hi)),
            p_value=p[name],
            p_holm=running,
            significant=rejecting,
            level=1 - level_alpha,
        )
    return {name: results[name] for name in pairs}
