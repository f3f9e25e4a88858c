"""Shared fixtures. S3 tests talk HTTP to a real S3-compatible server (moto in server mode) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leverplus.cpus import THREAD_VARIABLES, available_cpus

# `make test` runs pytest-xdist workers (pytest_xdist_auto_num_workers below). Each worker's torch, and every run it
# starts, gets its share of the CPUs (at least one thread) instead of a thread per core each, which oversubscribed
# the CPUs and made the suite 1.5x slower. (Set before torch loads.)
if (_WORKERS := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    for _name in THREAD_VARIABLES:
        os.environ[_name] = str(max(1, available_cpus() // _WORKERS))

from leverplus.config import StoreSettings
from leverplus.store import Store, open_store

# Fake credentials for the local server; the tests also check that they never leak into output.
S3_ACCESS_KEY = "AKIALEVERPLUSTEST0001"
S3_SECRET_KEY = "leverplus-test-secret-DO-NOT-LEAK-8c1f"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: half again as many workers as CPUs. Many tests wait on the processes they start or on the S3
    server, so one worker per CPU left the CPUs idle: on 2 cores the suite took 279 s with 2 workers, 249 s with 3."""
    return max(2, available_cpus() * 3 // 2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first, so parallel workers start the long ones early and finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen on port {port} within {timeout} s")


class S3Server:
    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"lp-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Standard AWS variables pointing at the local server, as a user's pod would have them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store root URI on each backend."""
    if request.param == "local":
        return (tmp_path / "store").as_uri()
    server: S3Server = request.getfixturevalue("s3_env")
    return f"s3://{server.new_bucket()}/some/prefix"


@pytest.fixture
def store(store_uri: str) -> Store:
    return open_store(store_uri, StoreSettings(max_attempts=2))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LEVERPLUS_* from the developer's shell leaks into a test; relative paths land in tmp_path."""
    for name in list(os.environ):
        if name.startswith("LEVERPLUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# ---- A tiny synthetic world with features, shared by the pipeline tests. ----------------------------------------
WORLD_SETTINGS = {
    "data.name": "synthetic",
    "lvlm.backend": "sim",
    "features.encoder": "simple",
    "pool.size": 16,  # shrunk from 64: tiny splits, fast tests
    "rl.shard_size": 60,
    "sft.anchors": 60,
    "sft.candidates": 8,
    "sft.epochs": 5,
    "eval.num_questions": 60,
    "eval.bootstrap_samples": 200,
}


@pytest.fixture(scope="session")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a 900/150-question synthetic world and its simple features (built once per session)."""
    from leverplus.config import load_settings
    from leverplus.data.synth import synthesize
    from leverplus.stages.context import StageContext
    from leverplus.stages.features import run_features

    root = tmp_path_factory.mktemp("world")
    synthesize(open_store(str(root / "datasets" / "synthetic")), 0, {"train": 900, "val": 150})
    run_features(StageContext(load_settings(overrides={**WORLD_SETTINGS, "store.uri": str(root)}), "features"))
    return root


@pytest.fixture
def world(world_root: Path, tmp_path: Path):
    """A fresh store (copy of the world) and a factory of StageContexts on it."""
    import shutil

    from leverplus.config import load_settings
    from leverplus.stages.context import StageContext

    root = tmp_path / "store"
    shutil.copytree(world_root, root)

    def context(stage: str = "test", **overrides: object) -> StageContext:
        settings = load_settings(overrides={**WORLD_SETTINGS, "store.uri": str(root), **overrides})
        return StageContext(settings, stage)

    context.root = root  # type: ignore[attr-defined]
    return context
