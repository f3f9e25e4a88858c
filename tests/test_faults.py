"""Fault injection with real processes: a scoring worker killed with -9 mid-shard, and an S3 endpoint that goes
away for a few seconds (or for good) in the middle of a stage."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from leverplus.config import StoreSettings
from leverplus.errors import StoreError
from leverplus.stages.filter import run_filter
from leverplus.stages.layout import plan_key
from leverplus.stages.plan import run_plan
from leverplus.stages.score import run_score
from leverplus.store import open_store
from tests.conftest import WORLD_SETTINGS

PLAN = {"rl.target_new_queries": 30, "rl.prior_acceptance_rate": 0.25, "rl.shard_size": 120}  # one 120-query shard


def _score_process(root: Path, log: IO[str], extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEVERPLUS_")},
        "LEVERPLUS_LOG_FORMAT": "json",
        "LEVERPLUS_STORE__URI": str(root),
    }
    env.update(
        {
            f"LEVERPLUS_{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": str(v)
            for k, v in {**WORLD_SETTINGS, **PLAN}.items()
        }
    )
    env.update(extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "leverplus", "score", "--round", "round-k", "--shard", "0"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )


def test_scoring_worker_killed_mid_shard_then_rerun_gives_the_uninterrupted_result(world, tmp_path: Path) -> None:
    ctx = world("plan", **PLAN)
    run_plan(ctx, "rl", plan_key("round-k"), "round-k")
    shard = world.root / "rounds/round-k/shards/00000.jsonl"

    log = tmp_path / "score.log"
    with log.open("w") as sink:
        proc = _score_process(world.root, sink)
        deadline = time.monotonic() + 120
        while '"progress"' not in log.read_text():  # it has scored part of the shard
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not shard.parent.exists() or not any(shard.parent.iterdir())  # nothing half-written, not even a temp

    run_score(world("score", **PLAN), "round-k", 0, policy_uri=None)  # the rerun
    after_kill = shard.read_bytes()
    shard.unlink()
    run_score(world("score", **PLAN), "round-k", 0, policy_uri=None)  # an uninterrupted run
    assert shard.read_bytes() == after_kill
    assert run_filter(world("filter", **PLAN), "round-k")["added_queries"] > 0


class FlakyProxy:
    """A TCP proxy in front of the S3 server that can refuse connections for a while, like a restarting MinIO."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.stopped = threading.Event()
        self.up()

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()  # new connections are refused until up()

    def close(self) -> None:
        self.stopped.set()
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while not self.stopped.is_set() and self.listener is listener:
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@pytest.fixture
def proxy(s3_env) -> FlakyProxy:
    flaky = FlakyProxy(s3_env.port)
    yield flaky
    flaky.close()


def _proxied_store(proxy: FlakyProxy, bucket: str, attempts: int):
    settings = StoreSettings(
        endpoint_url=f"http://127.0.0.1:{proxy.port}", max_attempts=attempts, connect_timeout_s=1.0
    )
    return open_store(f"s3://{bucket}/store", settings)


def test_s3_outage_of_a_few_seconds_is_ridden_out_with_backoff(s3_env, proxy: FlakyProxy) -> None:
    store = _proxied_store(proxy, s3_env.new_bucket(), attempts=10)
    store.put_bytes("before", b"x")
    proxy.down()
    threading.Timer(3.0, proxy.up).start()  # the server comes back after 3 s
    start = time.monotonic()
    store.put_bytes("during", json.dumps({"written": "while the endpoint was down"}).encode())
    assert time.monotonic() - start >= 2.5  # it waited, retrying, rather than failing
    assert store.get_bytes("during") and store.list() == ["before", "during"]


def test_s3_gone_for_good_fails_cleanly_after_the_retry_budget(s3_env, proxy: FlakyProxy) -> None:
    bucket = s3_env.new_bucket()
    store = _proxied_store(proxy, bucket, attempts=3)
    proxy.down()
    with pytest.raises(StoreError, match=r"cannot reach S3 endpoint http://127\.0\.0\.1:\d+ after 3 attempts"):
        store.put_bytes("never", b"x")
    direct = open_store(f"s3://{bucket}/store", StoreSettings(endpoint_url=s3_env.endpoint))
    assert direct.list() == []  # nothing half-written


@pytest.mark.slow
def test_s3_outage_in_the_middle_of_a_scoring_process(world, s3_env, proxy: FlakyProxy, tmp_path: Path) -> None:
    """A real `leverplus score` process on an S3 store behind the proxy: the endpoint disappears for 4 s after the
    process has read its inputs and started scoring, i.e. while it writes its shard. It retries with backoff and
    finishes; its shard is byte-identical to one written with no outage."""
    bucket = s3_env.new_bucket()
    direct = open_store(f"s3://{bucket}/store", StoreSettings(endpoint_url=s3_env.endpoint))
    for path in (world.root / "features").rglob("*.safetensors"):
        direct.put_file(str(path.relative_to(world.root)), path)
    data_root = str(world.root / "datasets" / "synthetic")
    ctx = world("plan", **PLAN, **{"store.uri": f"s3://{bucket}/store", "data.root": data_root})
    run_plan(ctx, "rl", plan_key("round-k"), "round-k")

    log = tmp_path / "score.log"
    extra = {
        "LEVERPLUS_STORE__URI": f"s3://{bucket}/store",
        "LEVERPLUS_DATA__ROOT": data_root,
        "LEVERPLUS_STORE__ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "LEVERPLUS_STORE__MAX_ATTEMPTS": "10",
        "LEVERPLUS_STORE__CONNECT_TIMEOUT_S": "1",
    }
    with log.open("w") as sink:
        proc = _score_process(world.root, sink, extra)
        deadline = time.monotonic() + 120
        while '"progress"' not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.02)
        proxy.down()
        time.sleep(4.0)
        assert proc.poll() is None, log.read_text()[-2000:]  # still retrying, not failed
        proxy.up()
        assert proc.wait(timeout=120) == 0, log.read_text()[-2000:]

    shard = "rounds/round-k/shards/00000.jsonl"
    local = world("score", **PLAN)
    run_plan(world("plan", **PLAN), "rl", plan_key("round-k"), "round-k")
    run_score(local, "round-k", 0, policy_uri=None)
    assert direct.get_bytes(shard) == (world.root / shard).read_bytes()
    assert direct.exists("rounds/round-k/shards/00000.manifest.json")
