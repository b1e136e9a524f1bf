"""Blob storage in an S3-compatible bucket (AWS S3, MinIO, R2, Ceph...), for bot and workers on different hosts.

One aiobotocore client per process, opened once (``await S3Storage(...).open()``) and closed with ``aclose()``.
Large files stream: ``put_file`` uploads in multipart chunks, ``get_file`` writes the body to disk as it arrives.
Every fault comes out as ``KeyError`` (no such blob) or ``StorageError`` naming the bucket, the endpoint, the key and
the setting to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from jobs.storage.base import StorageError, checked_key

__all__ = ["MIN_PART_SIZE", "S3Storage"]

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's floor for every multipart part but the last
DEFAULT_PART_SIZE = 8 * MiB
DELETE_BATCH = 1000  # S3's ceiling for one DeleteObjects call
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


class S3Storage:
    """Blobs as objects ``<prefix><key>`` in one bucket; keys are checked like ``LocalStorage``'s."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        max_attempts: int = 3,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum part of {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        stripped = prefix.strip("/")
        self.prefix = f"{checked_key(stripped)}/" if stripped else ""
        self._credentials = {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        self._config = AioConfig(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # MinIO, Ceph and friends behind a custom endpoint rarely resolve '<bucket>.<host>'; paths always work.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Checksums only where S3 requires them: newer botocore defaults break several S3-compatible stores.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @property
    def where(self) -> str:
        """The bucket and endpoint in words, for error messages."""
        endpoint = self.endpoint_url or f"AWS S3 (region {self.region or 'from the AWS default chain'})"
        return f"bucket {self.bucket!r} at {endpoint}"

    async def open(self) -> S3Storage:
        """Create the client and check that the bucket answers, so a wrong setting fails at start, not mid-job."""
        session = get_session()
        creator = session.create_client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=self._config, **self._credentials
        )
        self._client = await self._stack.enter_async_context(creator)
        try:
            async with self._errors("open", ""):
                await self._client.head_bucket(Bucket=self.bucket)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None

    def local_path(self, key: str) -> None:
        return None

    async def share_url(self, key: str, expires_s: int) -> str:
        """A presigned GET of ``key``, signed locally (no request): it works wherever the endpoint is reachable."""
        full = self._full(key)
        async with self._errors("share", key):
            url: str = await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires_s
            )
        return url

    async def put(self, key: str, data: bytes) -> None:
        async with self._errors("put", key):
            await self._s3.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    async def get(self, key: str) -> bytes:
        async with self._errors("get", key):
            response = await self._s3.get_object(Bucket=self.bucket, Key=self._full(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def exists(self, key: str) -> bool:
        try:
            async with self._errors("exists", key):
                await self._s3.head_object(Bucket=self.bucket, Key=self._full(key))
        except KeyError:
            return False
        return True

    async def delete(self, key: str) -> bool:
        # DeleteObject answers 204 whether or not the object was there; the caller wants to know.
        existed = await self.exists(key)
        async with self._errors("delete", key):
            await self._s3.delete_object(Bucket=self.bucket, Key=self._full(key))
        return existed

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder key ending in '/'); returns how many went."""
        folder = self._full(prefix.rstrip("/")) + "/"  # 'users/a/' never matches 'users/ab/...'
        async with self._errors("delete_prefix", prefix):
            # 1. List everything first: deleting while paging is not safe on every S3-compatible store.
            keys: list[str] = []
            async for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            # 2. Delete in batches of S3's maximum, naming the first object that refused to go.
            for start in range(0, len(keys), DELETE_BATCH):
                batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
                response = await self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if errors := response.get("Errors"):
                    first = errors[0]
                    raise StorageError(
                        f"S3 refused to delete {first['Key']!r} in {self.where} ({first.get('Code')}: "
                        f"{first.get('Message')}); {len(errors)} objects under {prefix!r} remain"
                    )
        return len(keys)

    async def put_file(self, key: str, path: Path) -> None:
        size = path.stat().st_size
        if size <= self.part_size:
            await self.put(key, await asyncio.to_thread(path.read_bytes))
            return
        full = self._full(key)
        async with self._errors("put_file", key):
            upload_id = (await self._s3.create_multipart_upload(Bucket=self.bucket, Key=full))["UploadId"]
            try:
                parts = await self._upload_parts(full, upload_id, path)
                await self._s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                # Parts of an unfinished upload stay billed until aborted; shield so a cancelled job still aborts.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                    )
                raise

    async def get_file(self, key: str, path: Path) -> None:
        full = self._full(key)  # a bad key fails before anything touches the disk
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                async with self._errors("get_file", key):
                    response = await self._s3.get_object(Bucket=self.bucket, Key=full)
                    async with response["Body"] as body:
                        async for chunk in body.iter_chunks(MiB):
                            await asyncio.to_thread(handle.write, chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def _upload_parts(self, full: str, upload_id: str, path: Path) -> list[dict[str, Any]]:
        """One part in memory at a time: a 150 MB LoRA costs ``part_size`` bytes of RAM, not 150 MB."""
        parts: list[dict[str, Any]] = []
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, self.part_size):
                number = len(parts) + 1
                response = await self._s3.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": response["ETag"], "PartNumber": number})
        return parts

    async def list_blobs(self, prefix: str) -> list[tuple[str, float]]:
        """``(key, last modified as a Unix time)`` of every object under ``prefix``, for retention."""
        folder = self._full(prefix.rstrip("/")) + "/"
        blobs: list[tuple[str, float]] = []
        async with self._errors("list_blobs", prefix):
            async for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                blobs.extend(
                    (item["Key"].removeprefix(self.prefix), item["LastModified"].timestamp())
                    for item in page.get("Contents", [])
                )
        return sorted(blobs)

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise StorageError(f"S3 storage for {self.where} is not open: call `await storage.open()` first")
        return self._client

    def _full(self, key: str) -> str:
        return self.prefix + str(checked_key(key))

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str, key: str) -> AsyncIterator[None]:
        """Translate botocore faults into KeyError (missing blob) or a StorageError that says what to set."""
        what = f"{operation} {key!r} in {self.where}" if key else f"{operation} {self.where}"
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket" or (code in _MISSING_CODES and not key):
                raise StorageError(
                    f"S3 {self.where} does not exist: create it, or set HEADSHOT_S3_BUCKET to an existing bucket"
                ) from None
            if code in _MISSING_CODES:
                raise KeyError(f"no blob stored under {key!r} in {self.where}") from None
            if code in _DENIED_CODES:
                raise StorageError(
                    f"S3 refused {what} ({code}): check HEADSHOT_S3_ACCESS_KEY_ID and HEADSHOT_S3_SECRET_ACCESS_KEY, "
                    "and that this key may read and write the bucket"
                ) from None
            raise StorageError(f"S3 failed to {what}: {code} {error}") from error
        except EndpointConnectionError as error:
            raise StorageError(
                f"cannot reach S3 to {what} ({error}): check HEADSHOT_S3_ENDPOINT_URL and HEADSHOT_S3_REGION, "
                "and that the server is up"
            ) from None
        except NoCredentialsError:
            raise StorageError(
                f"no S3 credentials to {what}: set HEADSHOT_S3_ACCESS_KEY_ID and HEADSHOT_S3_SECRET_ACCESS_KEY "
                "(or provide AWS credentials through the environment or an instance role)"
            ) from None
        except BotoCoreError as error:
            raise StorageError(f"S3 failed to {what}: {error}; check the HEADSHOT_S3_* settings") from error
