"""The blob storage contract, run against both backends: a local folder and an S3 bucket on moto's real server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobs.contract.keys import lora_key, selfie_key, user_prefix
from jobs.storage import BlobStorage, LocalStorage

BAD_KEYS = ("../etc/passwd", "/abs/key", "users/a/../../b", "users/a/..", "")


async def test_put_get_delete_prefix_per_user(storage: BlobStorage) -> None:
    ann, bob = selfie_key("local:ann", 1, 1), selfie_key("local:bob", 1, 1)
    await storage.put(ann, b"ann's selfie")
    await storage.put(bob, b"bob's selfie")
    await storage.put(lora_key("local:ann", 1), b"weights")
    assert await storage.get(ann) == b"ann's selfie"
    assert await storage.exists(ann) and await storage.exists(bob)
    assert await storage.delete_prefix(user_prefix("local:ann")) == 2
    assert not await storage.exists(ann)
    assert not await storage.exists(lora_key("local:ann", 1))
    assert await storage.get(bob) == b"bob's selfie"
    assert await storage.delete_prefix(user_prefix("local:ann")) == 0


async def test_a_user_prefix_never_covers_a_longer_user_key(storage: BlobStorage) -> None:
    # 'users/local%3Aann/' must not match 'users/local%3Aanna/...' (a bare S3 prefix would).
    await storage.put(selfie_key("local:anna", 1, 1), b"anna's selfie")
    assert await storage.delete_prefix(user_prefix("local:ann")) == 0
    assert await storage.get(selfie_key("local:anna", 1, 1)) == b"anna's selfie"


async def test_delete_says_whether_the_blob_was_there(storage: BlobStorage) -> None:
    key = selfie_key("local:ann", 1, 2)
    await storage.put(key, b"x")
    assert await storage.delete(key) is True
    assert await storage.delete(key) is False


async def test_missing_blob_is_a_key_error_and_leaves_no_file(storage: BlobStorage, tmp_path: Path) -> None:
    key = lora_key("local:ghost", 1)
    assert not await storage.exists(key)
    with pytest.raises(KeyError, match="no blob stored"):
        await storage.get(key)
    target = tmp_path / "download" / "weights.safetensors"
    with pytest.raises(KeyError, match="no blob stored"):
        await storage.get_file(key, target)
    assert not target.exists()
    assert not list(tmp_path.rglob(".tmp-*"))


async def test_traversal_is_refused_by_every_method(storage: BlobStorage, tmp_path: Path) -> None:
    source = tmp_path / "file.bin"
    source.write_bytes(b"x")
    methods = {
        "put": (b"x",),
        "get": (),
        "exists": (),
        "delete": (),
        "put_file": (source,),
        "get_file": (tmp_path / "out" / "file.bin",),
    }
    for bad in BAD_KEYS:
        for name, args in methods.items():
            with pytest.raises(ValueError, match="not a relative path"):
                await getattr(storage, name)(bad, *args)
    with pytest.raises(ValueError, match="not a relative path"):
        await storage.delete_prefix("users/../")
    assert not (tmp_path / "out").exists()


async def test_large_file_streams_both_ways_byte_identical(storage: BlobStorage, tmp_path: Path) -> None:
    # 12 MB: more than two 5 MB multipart parts on S3, a LoRA-sized file without the wait.
    original = tmp_path / "lora.safetensors"
    original.write_bytes(os.urandom(12 * 1024 * 1024))
    key = lora_key("local:ann", 3)
    await storage.put_file(key, original)
    assert await storage.exists(key)
    copy = tmp_path / "scratch" / "pytorch_lora_weights.safetensors"
    await storage.get_file(key, copy)
    assert copy.read_bytes() == original.read_bytes()
    # A second upload replaces the first whole.
    small = tmp_path / "small.bin"
    small.write_bytes(b"retrained")
    await storage.put_file(key, small)
    await storage.get_file(key, copy)
    assert copy.read_bytes() == b"retrained"
    assert sorted(path.name for path in copy.parent.iterdir()) == [copy.name]  # no temp files left beside it


def test_user_prefixes_are_distinct_and_cannot_escape() -> None:
    # Quoting keeps look-alike keys apart: a user id cannot smuggle a path into another user's folder.
    assert user_prefix("telegram:1/../2") != user_prefix("telegram:2")
    assert "/" not in user_prefix("telegram:1/../2").removeprefix("users/").rstrip("/")
    storage = LocalStorage(Path("/tmp/never-written"))
    for bad in BAD_KEYS:
        with pytest.raises(ValueError, match="not a relative path"):
            storage.local_path(bad)


async def test_retention_can_list_every_blob_with_its_age(storage: BlobStorage) -> None:
    from jobs.worker.retention import ListableStorage

    assert isinstance(storage, ListableStorage)  # the retention cron job works on both backends
    before = time.time() - 60  # S3 keeps whole seconds; moto's clock is this machine's
    ann, bob = selfie_key("local:ann", 1, 1), lora_key("local:bob", 1)
    await storage.put(ann, b"ann's selfie")
    await storage.put(bob, b"weights")
    listed = dict(await storage.list_blobs("users/"))
    assert set(listed) == {ann, bob}
    assert all(before < modified <= time.time() + 60 for modified in listed.values())
    assert [key for key, _ in await storage.list_blobs(user_prefix("local:ann"))] == [ann]
