"""Issue 12 D8, D9, D11: every store failure a user can cause is one line naming the URI (exit 2 from the CLI),
and debris of killed writes is listed and cleaned. (D3, credentials reaching every step: tests/test_security.py.)"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from leverplus.cli import main
from leverplus.config import StoreSettings
from leverplus.errors import ConflictError, StoreError
from leverplus.stages.layout import LEASE
from leverplus.store import open_store
from leverplus.store.clean import clean
from leverplus.store.lease import lease
from tests.conftest import _free_port


def test_a_missing_bucket_is_one_line_for_list_upload_and_lease(s3_env, tmp_path: Path) -> None:
    store = open_store("s3://no-such-bucket-here/x", StoreSettings(max_attempts=1))
    for action in (
        lambda: store.list("rounds/"),
        lambda: store.put_file("big.bin", _file(tmp_path)),
        lambda: store.put_if_absent(LEASE, b"{}"),
    ):
        with pytest.raises(StoreError, match=r"s3://no-such-bucket-here/x/.*bucket 'no-such-bucket-here' does not"):
            action()


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1024)
    return path


def test_a_dead_endpoint_while_taking_the_lease_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable")
    settings = StoreSettings(endpoint_url=f"http://127.0.0.1:{_free_port()}", max_attempts=1, connect_timeout_s=0.5)
    store = open_store("s3://bucket/x", settings)
    expected = r"writing s3://bucket/x/rl-data/balanced/.lease: cannot reach S3 endpoint"
    with pytest.raises(StoreError, match=expected), lease(store, LEASE, owner="test"):
        pass


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    ],
)
def test_disk_full_read_only_and_denied_are_one_line_and_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], failure: OSError, message: str
) -> None:
    """The failure is injected where the kernel reports it (fsync of the temp file: where a full disk shows)."""
    root = tmp_path / "store"

    def failing_fsync(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StoreError, match=rf"writing {root.as_uri()}/features/x.bin: {message}"):
        open_store(str(root)).put_bytes("features/x.bin", b"data")
    assert [p.name for p in (root / "features").iterdir()] == []  # no temp file, no object
    # Through the CLI: exit 2 and one line.
    assert main(["data", "synth", "--out", str(tmp_path / "world"), "--train", "3", "--val", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and str(tmp_path / "world") in err


def test_an_unwritable_log_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pathlib import Path as P

    def denied(self: P, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(P, "mkdir", denied)
    assert main(["run", "sft", "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Permission denied" in err and str(tmp_path / "logs") in err


def test_verify_lists_debris_and_store_clean_removes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    store = open_store(str(root))
    store.put_bytes("rl-data/balanced/v1.jsonl", b"")
    debris = root / "rl-data/balanced/.v2.jsonl.tmp-abc123"
    debris.write_bytes(b"x" * 100)
    old = 3 * 3600
    os.utime(debris, (debris.stat().st_mtime - old,) * 2)
    fresh = root / "rl-data/balanced/.v3.jsonl.tmp-def456"  # a write in flight: never touched
    fresh.write_bytes(b"y")
    alive = {"owner": "filter of round r", "host": "another-node", "pid": 1, "since": "2026-11-25T00:00:00+00:00"}
    store.put_bytes(LEASE, json.dumps(alive).encode())

    main(["verify", "--store", str(root)])
    out = capsys.readouterr().out
    assert "STALE temp object rl-data/balanced/.v2.jsonl.tmp-abc123" in out and ".v3.jsonl" not in out
    assert "STALE lease" in out and "another-node" in out and "2 stale" in out

    with pytest.raises(ConflictError, match="may still be publishing"):  # a holder on another host may be alive
        clean(store, LEASE, 3600, release_lease=False)
    assert main(["store", "clean", "--store", str(root), "--older-than-hours", "1", "--release-lease"]) == 0
    assert not debris.exists() and fresh.exists() and not store.exists(LEASE)
    assert "2 thing(s) removed" in capsys.readouterr().out


def test_a_lease_whose_holder_died_on_this_host_is_taken_over(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    gone = {"owner": "filter of round killed", "host": socket.gethostname(), "pid": dead.pid, "since": "x"}
    store.put_bytes(LEASE, json.dumps(gone).encode())
    with lease(store, LEASE, owner="filter of round next"):
        assert json.loads(store.get_bytes(LEASE))["owner"] == "filter of round next"
    alive = gone | {"pid": os.getpid()}  # this very process: alive, so the lease is respected
    store.put_bytes(LEASE, json.dumps(alive).encode())
    with pytest.raises(ConflictError, match="store clean --release-lease"), lease(store, LEASE, owner="next"):
        pass


def test_two_takers_of_a_dead_holders_lease_never_both_hold_it(tmp_path: Path, monkeypatch) -> None:
    """Issue 22 item 7: both read the dead holder before either replaces it, and the slower one removes the lease
    only after the faster one has taken it: still exactly one holds it."""
    import threading

    from leverplus.store import lease as lease_module

    store = open_store(str(tmp_path / "store"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = {"owner": "filter of round killed", "host": socket.gethostname(), "pid": dead.pid, "since": "x"}
    store.put_bytes(LEASE, json.dumps(gone).encode())
    both_read, taken, reads, deletes = threading.Barrier(2, timeout=10), threading.Event(), [], []
    real_read, real_delete, real_put = lease_module.read_holder, store.delete, store.put_if_absent

    def read_holder(store_: object, key: str) -> dict | None:
        holder = real_read(store_, key)
        if holder and holder.get("pid") == dead.pid and len(reads) < 2:
            reads.append(1)
            both_read.wait()
        return holder

    def delete(key: str) -> None:
        if key == LEASE and not taken.is_set():
            deletes.append(1)
            if len(deletes) == 2:
                taken.wait(5)  # the slower taker deletes after the faster one holds the lease
        real_delete(key)

    def put_if_absent(key: str, data: bytes) -> bool:
        created = real_put(key, data)
        if key == LEASE and created:
            taken.set()
        return created

    monkeypatch.setattr(lease_module, "read_holder", read_holder)
    monkeypatch.setattr(store, "delete", delete)
    monkeypatch.setattr(store, "put_if_absent", put_if_absent)
    held, refused = [], []

    def take(owner: str) -> None:
        try:
            with lease(store, LEASE, owner=owner):
                held.append(owner)
                threading.Event().wait(1)  # still holding while the other tries
        except ConflictError:
            refused.append(owner)

    takers = [threading.Thread(target=take, args=(f"round {i}",)) for i in range(2)]
    for t in takers:
        t.start()
    for t in takers:
        t.join()
    assert len(held) == 1 and len(refused) == 1, (held, refused)


def test_a_temp_file_dated_in_the_future_is_listed_and_cleaned(tmp_path: Path, capsys) -> None:
    """Issue 22 item 14: a restored or copied temp file with a future mtime is debris like any other."""
    root = tmp_path / "store"
    store = open_store(str(root))
    store.put_bytes("rounds/r/plan.json", b"{}")
    future = root / "rounds/r/.plan.json.tmp-abc"
    future.write_bytes(b"half")
    os.utime(future, (9e9, 9e9))  # the year 2255
    skewed = root / "rounds/r/.other.json.tmp-def"
    skewed.write_bytes(b"in flight")
    os.utime(skewed, (skewed.stat().st_mtime + 60,) * 2)  # a minute ahead: another host's clock, still in flight
    assert main(["verify", "--store", str(root)]) == 0
    assert "STALE temp object rounds/r/.plan.json.tmp-abc" in capsys.readouterr().out
    assert main(["store", "clean", "--store", str(root), "--older-than-hours", "1"]) == 0
    assert "(dated in the future)" in capsys.readouterr().out and not future.exists() and skewed.exists()
    assert main(["store", "clean", "--store", str(root), "--older-than-hours", "0"]) == 0
    assert not skewed.exists()


def test_the_dead_endpoint_message_names_the_endpoint_from_aws_endpoint_url(monkeypatch) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable")
    store = open_store("s3://bucket/x", StoreSettings(max_attempts=1, connect_timeout_s=0.5))
    with pytest.raises(StoreError, match=f"cannot reach S3 endpoint {endpoint} after 1 attempts"):
        store.put_bytes("k", b"x")
