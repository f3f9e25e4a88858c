"""The same store tests run against the local filesystem and a real S3-compatible server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from leverplus.config import StoreSettings
from leverplus.errors import NotFoundError, StoreError
from leverplus.store import LocalStore, S3Store, Store, open_object, open_store


def test_put_get_roundtrip_reports_sha256(store: Store) -> None:
    info = store.put_bytes("a/b/c.json", b'{"x": 1}')
    assert info.sha256 == hashlib.sha256(b'{"x": 1}').hexdigest()
    assert info.size == 8
    assert store.get_bytes("a/b/c.json") == b'{"x": 1}'
    assert store.sha256("a/b/c.json") == info.sha256


def test_put_replaces_previous_object(store: Store) -> None:
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new")
    assert store.get_bytes("k") == b"new"


def test_put_file_and_streaming_read(store: Store, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    info = store.put_file("blobs/payload.bin", src)
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    with store.open("blobs/payload.bin") as stream:
        first = stream.read(10)
        rest = stream.read()
    assert first + rest == payload


def test_exists_list_delete(store: Store) -> None:
    for key in ("rounds/r1/shards/00001.jsonl", "rounds/r1/shards/00000.jsonl", "rounds/r10/plan.json", "top"):
        store.put_bytes(key, b"x")
    assert store.exists("top")
    assert not store.exists("missing")
    assert store.list("rounds/r1/") == ["rounds/r1/shards/00000.jsonl", "rounds/r1/shards/00001.jsonl"]
    assert store.list() == sorted(
        ["rounds/r1/shards/00000.jsonl", "rounds/r1/shards/00001.jsonl", "rounds/r10/plan.json", "top"]
    )
    store.delete("top")
    store.delete("top")  # deleting twice is not an error
    assert not store.exists("top")


def test_list_of_missing_prefix_is_empty(store: Store) -> None:
    assert store.list("nothing/here/") == []


def test_missing_object_error_names_uri(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"nope/x\.json does not exist"):
        store.get_bytes("nope/x.json")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/", "a\\b", "..", "a\x00b"])
def test_keys_that_escape_or_alias_are_rejected(store: Store, key: str) -> None:
    with pytest.raises(StoreError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_put_if_absent_creates_once(store: Store) -> None:
    assert store.put_if_absent("lease", b"first") is True
    assert store.put_if_absent("lease", b"second") is False
    assert store.get_bytes("lease") == b"first"
    assert store.list() == ["lease"]  # no staging leftovers


def test_local_write_failure_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(FileNotFoundError):
        store.put_file("x/y.bin", tmp_path / "does-not-exist")
    assert store.list() == []
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_open_store_dispatches_on_scheme(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    s3 = open_store("s3://bucket/pre/fix/")
    assert isinstance(s3, S3Store) and s3.uri == "s3://bucket/pre/fix"
    with pytest.raises(StoreError, match="unsupported store URI scheme 'gs'"):
        open_store("gs://bucket/x")
    with pytest.raises(StoreError, match="at least 3 characters"):
        open_store("s3://ab/x")


def test_open_object_splits_parent_and_name(tmp_path: Path) -> None:
    store, name = open_object(str(tmp_path / "dir" / "file.json"))
    assert name == "file.json" and store.uri == (tmp_path / "dir").as_uri()
    s3, key = open_object("s3://bucket/a/b.json")
    assert key == "b.json" and s3.uri == "s3://bucket/a"
    with pytest.raises(StoreError, match="no object name"):
        open_object("s3://bucket")


def test_s3_wrong_bucket_is_a_clear_error(s3_env) -> None:
    store = open_store("s3://no-such-bucket-here/x", StoreSettings(max_attempts=1))
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist"):
        store.put_bytes("k", b"x")


def test_s3_unreachable_endpoint_fails_cleanly_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import S3_SECRET_KEY, _free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    settings = StoreSettings(endpoint_url=f"http://127.0.0.1:{_free_port()}", max_attempts=2, connect_timeout_s=0.5)
    store = open_store("s3://bucket/x", settings)
    with pytest.raises(StoreError, match="cannot reach S3 endpoint") as info:
        store.put_bytes("k", b"x")
    assert S3_SECRET_KEY not in str(info.value) and S3_SECRET_KEY not in repr(store.options)
