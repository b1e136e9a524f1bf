"""A worker's compiled kernels and FP8 scales, shared with the workers of other hosts through the blob storage.

A worker keeps what it compiles (and FP8 rendering's calibrated scales) in ``HEADSHOT_COMPILE_CACHE_DIR``, so a
restart on the same host loads them: ready in 88 s instead of 173-211 s cold on an H200 (BENCHMARKS.md). But a pool
on several hosts (S3 storage) starts every new host cold. With ``HEADSHOT_SHARE_COMPILED`` a worker whose start
compiled anything new publishes torch's cache artifacts (``torch.compiler.save_cache_artifacts``: the inductor and
AOTAutograd entries the start used, hits and misses alike, Triton's kernels inside) and its FP8 scales under
``compiled/<model>/``, and every worker loads them before it compiles (``load_cache_artifacts`` writes them into its
own cache folder), so a new host's compiles are cache hits. The project's own Triton kernels (``headshot::geglu``,
``group_norm``, ``lora_linear``: launched by those operators, not by inductor, so not in the artifacts) travel beside
them as Triton's cache entries, which a new host would otherwise compile during its start. Artifacts of another
torch, GPU or worker set-up would only miss, so the key names the first two and a hash of the settings that decide
which graphs a start compiles: two pools of different set-ups on one bucket keep a set each. Nothing of a user is in
them: kernels and per-layer scales of the base model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.settings import Settings
from jobs.storage import BlobStorage
from jobs.worker.model_setup import ServingModel, float8_scales_name, model_key, prepare_model

__all__ = [
    "SharedCompile",
    "load_shared_compile",
    "own_triton_kernels",
    "pack_triton_kernels",
    "prepare_model_sharing",
    "publish_shared_compile",
    "set_up_hash",
    "shares_compile",
    "unpack_triton_kernels",
]

log = logging.getLogger(__name__)

PREFIX = "compiled"


@dataclass
class SharedCompile:
    """Where this worker's start shares its compiled artifacts, and what it found there."""

    kernels_key: str
    scales_key: str
    scales_name: str  # the FP8 scales file's name in the compile cache folder
    kernels_found: bool
    misses_before: int  # the process's compile cache misses before the start compiled
    triton_key: str = ""  # the project's own Triton kernels, as Triton's cache entries
    triton_found: set[str] = field(default_factory=set)  # the entries this start found shared


# What decides which graphs a worker's start compiles, beside the model, torch and the GPU.
GRAPH_SETTINGS = (
    "dtype",
    "compile_backend",
    "render_float8",
    "train_float8",
    "render_cuda_graphs",
    "compile_render_glue",
    "render_fused_resnets",  # its blocks stay out of the compiled glue
    "render_float8_convs",  # the convolutions' Triton kernels tune and compile in the warm-up; the scales differ
    "render_fused_geglu",
    "render_subpixel_upsamplers",
    "train_subpixel_upsamplers",
    "unet_channels_last",
    "train_fused_resnets",  # the training warm-up runs the operator's backward kernels, Triton cache entries shared too
    "train_cuda_graphs",  # the training warm-up then runs its steps as the capture does: what it compiles may differ
    "warm_aspects",
    "headshots_per_request",
    "headshot_candidates",
    "preview_count",
    "lora_rank",
    "train_batch_size",
    "train_gradient_checkpointing",
)


def set_up_hash(settings: Settings, device: str) -> str:
    """A short hash of the settings that decide a start's graphs, the compile profile they resolve to included."""
    import hashlib
    import json
    from dataclasses import asdict

    chosen = {name: getattr(settings, name) for name in GRAPH_SETTINGS}
    chosen["compile_profile"] = asdict(settings.compile_profile(device))
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _cache_misses() -> int:
    """Inductor and AOTAutograd cache misses in this process so far: each is a graph compiled from scratch."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["fxgraph_cache_miss"] + counters["aot_autograd"]["autograd_cache_miss"])


def shares_compile(settings: Settings, device: str) -> bool:
    """``HEADSHOT_SHARE_COMPILED``, or unset: on for a worker that compiles with inductor and keeps its blobs in S3
    (workers on other hosts); a local storage folder sits beside the local compile folder, which already serves."""
    compiling = settings.compile_profile(device)
    if not (compiling.unet or compiling.training) or settings.compile_backend != "inductor":
        return False
    if settings.share_compiled is not None:
        return settings.share_compiled
    return settings.storage_backend == "s3"


async def prepare_model_sharing(storage: BlobStorage, settings: Settings) -> ServingModel:
    """``prepare_model`` between loading what other hosts shared and publishing what this start compiled new."""
    shared = await load_shared_compile(storage, settings)
    model = await asyncio.to_thread(prepare_model, settings)
    await publish_shared_compile(storage, shared, settings)
    return model


async def load_shared_compile(storage: BlobStorage, settings: Settings) -> SharedCompile | None:
    """Before the model's start: load the kernels and FP8 scales another worker shared into this worker's compile
    cache folder (the scales only when none are kept there). None when this worker does not share."""
    # In a thread: importing torch and asking for the GPU would hold up the worker's event loop (its heartbeat).
    shared = await asyncio.to_thread(_shared_compile, settings)
    if shared is None:
        return None
    import torch  # imported by now

    if await storage.exists(shared.kernels_key):
        blob = await storage.get(shared.kernels_key)
        info = await asyncio.to_thread(torch.compiler.load_cache_artifacts, blob)
        shared.kernels_found = True
        entries = sum(len(keys) for keys in info.artifacts.values()) if info is not None else 0
        log.info("loaded %d compiled artifacts (%.0f MB) shared as %s", entries, len(blob) / 1e6, shared.kernels_key)
    folder = _triton_folder()
    # Python before 3.11.4 cannot extract safely (no "data" filter): such a worker compiles the kernels itself.
    if folder is not None and hasattr(tarfile, "data_filter") and await storage.exists(shared.triton_key):
        blob = await storage.get(shared.triton_key)
        shared.triton_found = await asyncio.to_thread(unpack_triton_kernels, blob, folder)
        log.info("loaded %d Triton kernels shared as %s", len(shared.triton_found), shared.triton_key)
    scales = settings.resolved_compile_cache_dir / shared.scales_name
    if not scales.exists() and await storage.exists(shared.scales_key):
        await storage.get_file(shared.scales_key, scales)
        log.info("loaded the FP8 scales shared as %s into %s", shared.scales_key, scales.parent)
    return shared


def _shared_compile(settings: Settings) -> SharedCompile | None:
    """Where this worker shares (None when it does not), with its compile cache folder in use for the artifacts."""
    import torch

    from pipeline.diffusion.acceleration import use_compile_cache
    from pipeline.diffusion.loading import device_name, pick_device

    device = settings.device or pick_device()
    if not shares_compile(settings, device):
        return None
    use_compile_cache(settings.resolved_compile_cache_dir)  # where load_cache_artifacts writes them
    gpu = device_name(device)
    scales_name = float8_scales_name(settings)
    place = f"{PREFIX}/{_slug(settings.model)}-{model_key(settings)}"
    stem = f"{place}/{_slug(torch.__version__)}-{_slug(gpu)}-{set_up_hash(settings, device)}"
    return SharedCompile(
        kernels_key=f"{stem}.bin",
        triton_key=f"{stem}-triton.tar.gz",
        scales_key=f"{place}/{scales_name}",
        scales_name=scales_name,
        kernels_found=False,
        misses_before=_cache_misses(),
    )


async def publish_shared_compile(storage: BlobStorage, shared: SharedCompile | None, settings: Settings) -> int:
    """After the model's start: publish this start's compiled artifacts when it compiled anything new (or found
    none shared), and its FP8 scales when none are shared; return the bytes published."""
    import torch

    if shared is None:
        return 0
    published = 0
    if not shared.kernels_found or _cache_misses() > shared.misses_before:
        saved: Any = await asyncio.to_thread(torch.compiler.save_cache_artifacts)
        if saved is not None:
            blob, _ = saved
            await storage.put(shared.kernels_key, blob)
            published += len(blob)
            log.info("shared this start's compiled artifacts (%.0f MB) as %s", len(blob) / 1e6, shared.kernels_key)
    folder = _triton_folder()
    own = set() if folder is None else await asyncio.to_thread(own_triton_kernels, folder)
    if folder is not None and own - shared.triton_found:  # kernels of the project's this start compiled, not yet shared
        blob = await asyncio.to_thread(pack_triton_kernels, folder, own)
        await storage.put(shared.triton_key, blob)
        published += len(blob)
        log.info("shared this start's %d Triton kernels (%.1f MB) as %s", len(own), len(blob) / 1e6, shared.triton_key)
    scales = settings.resolved_compile_cache_dir / shared.scales_name
    if scales.exists() and not await storage.exists(shared.scales_key):
        await storage.put_file(shared.scales_key, scales)
        published += scales.stat().st_size
    return published


def _triton_folder() -> Path | None:
    """Triton's cache folder: the one named, or the worker's, where ``use_compile_cache`` (called by
    ``_shared_compile``) points it; None if neither (no kernel of ours to share then)."""
    named = os.environ.get("TRITON_CACHE_DIR")
    return Path(named) if named else None


def own_triton_kernels(folder: Path) -> set[str]:
    """The entries (subfolders) of Triton's cache ``folder`` that hold a kernel not of inductor's: each compiled kernel
    has a ``__grp__<kernel>.json`` naming its files, and inductor names every kernel it writes ``triton_*``; those
    travel in torch's cache artifacts already."""
    if not folder.is_dir():
        return set()
    return {
        group.parent.name
        for group in folder.glob("*/__grp__*.json")
        if not group.name.removeprefix("__grp__").startswith("triton_")
    }


def pack_triton_kernels(folder: Path, entries: set[str]) -> bytes:
    """``entries`` of Triton's cache ``folder`` as one gzipped tar, each under its own name."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for entry in sorted(entries):
            archive.add(folder / entry, arcname=entry)
    return out.getvalue()


def unpack_triton_kernels(blob: bytes, folder: Path) -> set[str]:
    """Write a ``pack_triton_kernels`` blob into Triton's cache ``folder``; return its entries. Plain files under the
    folder only (tarfile's "data" filter refuses links, devices and paths that leave it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
        archive.extractall(folder, filter="data")
        return {Path(name).parts[0] for name in archive.getnames()}
