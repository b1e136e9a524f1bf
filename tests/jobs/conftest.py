"""A real S3 server (moto's, on loopback) and a storage fixture that runs each contract test on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from jobs.settings import Settings
from jobs.storage import BlobStorage, LocalStorage
from jobs.storage.s3 import MIN_PART_SIZE, S3Storage

S3_CREDENTIALS: dict[str, Any] = {
    "s3_region": "us-east-1",
    "s3_access_key_id": "testing",
    "s3_secret_access_key": "testing",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port: the real HTTP protocol, signatures and multipart rules."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    """A plain boto3 client, to look into the bucket from outside the code under test."""
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    name = f"headshots-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str, s3_bucket: str) -> Settings:
    """The test settings switched to S3 storage, validated like a real environment would be."""
    values = {
        **settings.model_dump(),
        "storage_backend": "s3",
        "s3_bucket": s3_bucket,
        "s3_endpoint_url": s3_endpoint,
        "s3_prefix": "prod/",
        **S3_CREDENTIALS,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStorage]:
    """Each backend in turn; S3 with the smallest legal part size, so a 12 MB file takes three parts."""
    if request.param == "local":
        yield LocalStorage(tmp_path / "storage")
        return
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    s3 = S3Storage(
        bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        prefix="prod",
        part_size=MIN_PART_SIZE,
    )
    await s3.open()
    yield s3
    await s3.aclose()
