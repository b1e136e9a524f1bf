"""Blob storage shared by the bot and the workers: selfies, LoRA weights and outputs under ``users/<user>/``.

A local directory by default (``local``); an S3-compatible bucket (``s3``) behind the same ``BlobStorage`` protocol
(``base``) when bot and workers run on different hosts. ``open_storage(settings)`` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.storage.base import BlobStorage, StorageError, checked_key
from jobs.storage.local import LocalStorage

if TYPE_CHECKING:
    from jobs.settings import Settings

__all__ = ["BlobStorage", "LocalStorage", "StorageError", "checked_key", "open_storage"]


async def open_storage(settings: Settings) -> BlobStorage:
    """The storage ``settings`` name, connected and checked; the caller closes it with ``aclose()``."""
    if settings.storage_backend == "s3":
        from jobs.storage.s3 import S3Storage  # aiobotocore loads only where S3 is used

        assert settings.s3_bucket is not None  # Settings refuses storage_backend='s3' without a bucket
        storage = S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None,
            prefix=settings.s3_prefix,
        )
        return await storage.open()
    return LocalStorage(settings.resolved_storage_dir)
