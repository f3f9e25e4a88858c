"""Issue 21 item 14: pools are sized from the CPUs a process may use (its cgroup's quota), not the node's count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leverplus import cpus


@pytest.fixture
def cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cpus, "CGROUP_ROOT", tmp_path)
    cpus.available_cpus.cache_clear()
    yield tmp_path
    cpus.available_cpus.cache_clear()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),  # v2, limits.cpu: 1
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU still runs one thread
        ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity mask decides
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup files at all (not Linux, or not mounted)
    ],
)
def test_the_quota_caps_what_the_node_has(cgroup: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (cgroup / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroup / name).write_text(text)
    assert cpus.available_cpus() == (expected or len(os.sched_getaffinity(0)))


def test_a_one_cpu_pod_runs_one_torch_thread(tmp_path: Path) -> None:
    """What a stage process does at start (the CLI calls limit_threads before any handler imports torch)."""
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    code = (
        "from pathlib import Path; from leverplus import cpus; "
        f"cpus.CGROUP_ROOT = Path({str(tmp_path)!r}); cpus.limit_threads(); "
        "import torch; print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in cpus.THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
