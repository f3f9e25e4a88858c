"""How many CPUs this process may use, decided once, in one place: the smallest of the CPU quota of its cgroup (a
pod's `limits.cpu`), its CPU affinity and the machine's count. `os.cpu_count()` alone is the *node's* count inside a
pod: a `cpu: 1` pod on a 64-core node would start 64 torch threads against a one-CPU quota and spend most of each
scheduling period throttled. torch's and the BLAS libraries' pools, the image readers and the local runner's
default workers all size themselves from this."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

__all__ = ["THREAD_VARIABLES", "available_cpus", "limit_threads"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@functools.cache
def available_cpus() -> int:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota(CGROUP_ROOT)
    return max(1, min(affinity, math.ceil(quota) if quota else affinity))


def _cgroup_quota(root: Path) -> float | None:
    """CPUs the cgroup may use per period (cgroup v2 cpu.max, or v1 cfs quota / period); None when unlimited."""
    try:
        if (v2 := root / "cpu.max").is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu"
        quota, period = (int((v1 / f"cpu.cfs_{n}_us").read_text()) for n in ("quota", "period"))
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def limit_threads() -> None:
    """Size the thread pools of torch and the BLAS libraries to the CPUs this process may use, unless the
    environment already does. Call before torch is imported: the pools read these variables when they load."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(available_cpus()))
