"""S3 specifics on moto's real server: multipart uploads, the bucket prefix, batched deletes, clear errors."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobs.contract.keys import lora_key, selfie_key, user_prefix
from jobs.settings import Settings
from jobs.storage import StorageError, open_storage
from jobs.storage import s3 as s3_storage
from jobs.storage.s3 import MIN_PART_SIZE, S3Storage


async def test_large_upload_goes_up_in_parts_under_the_prefix(
    s3_settings: Settings, s3_client: Any, tmp_path: Path
) -> None:
    storage = await open_storage(s3_settings)
    assert isinstance(storage, S3Storage)
    storage.part_size = MIN_PART_SIZE
    try:
        weights = tmp_path / "lora.safetensors"
        weights.write_bytes(os.urandom(12 * 1024 * 1024))
        await storage.put_file(lora_key("telegram:42", 1), weights)
    finally:
        await storage.aclose()
    bucket = s3_settings.s3_bucket
    head = s3_client.head_object(Bucket=bucket, Key="prod/" + lora_key("telegram:42", 1))
    assert head["ContentLength"] == 12 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of an object assembled from 3 parts
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # nothing left half-done


async def test_delete_prefix_deletes_in_batches(
    s3_settings: Settings, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_storage, "DELETE_BATCH", 2)  # S3 allows 1000 per call; 2 exercises the loop cheaply
    storage = await open_storage(s3_settings)
    try:
        for number in range(1, 6):
            await storage.put(selfie_key("discord:7", 1, number), b"selfie")
        await storage.put(selfie_key("discord:8", 1, 1), b"someone else")
        assert await storage.delete_prefix(user_prefix("discord:7")) == 5
    finally:
        await storage.aclose()
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=s3_settings.s3_bucket).get("Contents", [])]
    assert keys == ["prod/" + selfie_key("discord:8", 1, 1)]


async def test_missing_bucket_names_it_and_the_setting(s3_settings: Settings) -> None:
    wrong = s3_settings.model_copy(update={"s3_bucket": "no-such-bucket"})
    with pytest.raises(
        StorageError, match=r"'no-such-bucket' at http://127\.0\.0\.1:\d+ does not exist.*HEADSHOT_S3_BUCKET"
    ):
        await open_storage(wrong)


async def test_unreachable_endpoint_names_it_and_the_setting() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # One attempt: the production default (3, with backoff) would only make the test wait.
    wrong = S3Storage(
        "headshots",
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        max_attempts=1,
    )
    with pytest.raises(StorageError, match=rf"cannot reach S3 .*127\.0\.0\.1:{port}.*HEADSHOT_S3_ENDPOINT_URL"):
        await wrong.open()


def test_s3_settings_name_what_is_missing_and_hide_the_secret() -> None:
    with pytest.raises(ValidationError, match="set HEADSHOT_S3_BUCKET"):
        Settings(_env_file=None, storage_backend="s3")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="HEADSHOT_S3_ACCESS_KEY_ID is set but HEADSHOT_S3_SECRET_ACCESS_KEY"):
        Settings(_env_file=None, storage_backend="s3", s3_bucket="b", s3_access_key_id="AKIA")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="storage_backend"):
        Settings(_env_file=None, storage_backend="gcs")  # type: ignore[call-arg, arg-type]
    settings = Settings(
        _env_file=None,
        storage_backend="s3",
        s3_bucket="b",
        s3_access_key_id="AKIA",
        s3_secret_access_key="SECRET-s3-key",
    )  # type: ignore[call-arg, arg-type]
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings.model_dump())
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("b", part_size=1024)


async def test_an_export_too_big_for_the_chat_comes_as_a_link_that_delete_revokes(
    s3_settings: Settings, tiny_model: Any, selfie_dir: Path, tmp_path: Path, redis: Any
) -> None:
    import urllib.error
    import urllib.request

    from safetensors.numpy import load as load_safetensors

    from tests.harness import Harness

    def download(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bytes(response.read())

    async with Harness(s3_settings, tiny_model, tmp_path / "out") as harness:
        await harness.train_to_ready(selfie_dir)
        harness.port.upload_limit_bytes = 1000  # Discord's 10 MiB against a real LoRA, in miniature
        answer = await harness.say("/export")
        links = [word for word in answer.split() if word.startswith("http")]
        assert len(links) == 2 and "download it here within 1 hour(s)" in answer and not harness.port.files
        # The links are S3's presigned GETs: the file itself, a standard safetensors, with no credentials.
        weights = load_safetensors(await asyncio.to_thread(download, links[0]))
        assert any(key.startswith("unet.") for key in weights)
        await harness.say("/delete")
        await harness.say("/delete confirm")
    with pytest.raises(urllib.error.HTTPError):  # erased with everything else of the user
        await asyncio.to_thread(download, links[0])
