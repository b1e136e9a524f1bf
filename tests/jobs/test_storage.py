"""Local blob storage: atomic writes, per-user namespaces that cannot be escaped."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.payloads import lora_key, selfie_key
from jobs.storage import LocalStorage, user_prefix


async def test_put_get_delete_prefix_per_user(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    ann, bob = selfie_key("local:ann", 1, 1), selfie_key("local:bob", 1, 1)
    await storage.put(ann, b"ann's selfie")
    await storage.put(bob, b"bob's selfie")
    await storage.put(lora_key("local:ann", 1), b"weights")
    assert await storage.get(ann) == b"ann's selfie"
    assert await storage.delete_prefix(user_prefix("local:ann")) == 2
    assert not await storage.exists(ann)
    assert await storage.get(bob) == b"bob's selfie"
    with pytest.raises(KeyError, match="no blob stored"):
        await storage.get(ann)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_user_prefixes_are_distinct_and_cannot_escape() -> None:
    # Quoting keeps look-alike keys apart: a user id cannot smuggle a path into another user's folder.
    assert user_prefix("telegram:1/../2") != user_prefix("telegram:2")
    assert "/" not in user_prefix("telegram:1/../2").removeprefix("users/").rstrip("/")
    storage = LocalStorage(Path("/tmp/never-written"))
    for bad in ("../etc/passwd", "/abs/key", "users/a/../../b", ""):
        with pytest.raises(ValueError, match="not a relative path"):
            storage.local_path(bad)
