"""Workers on two hosts: what the first start compiled, shared through the blob storage, is a cache hit for the next
host's start (each a process of its own with an empty compile folder), and FP8 scales travel with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.settings import Settings
from jobs.worker.compile_share import set_up_hash, shares_compile

# One worker start on one host: load what is shared, compile (inductor, as a GPU worker does; a small graph stands
# for the UNet's, whose CPU compile takes minutes), keep FP8 scales as FP8 rendering's start does, publish.
START = """
import asyncio, json, sys
from pathlib import Path
import torch
from torch._dynamo.utils import counters
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.worker.compile_share import load_shared_compile, publish_shared_compile
from jobs.worker.model_setup import float8_scales_name

host, shared_dir = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(
    _env_file=None, model="tiny", data_dir=host / "data", compile_cache_dir=host / "compile", device="cpu",
    compile_unet=True, compile_backend="inductor", share_compiled=True,
)

async def start():
    storage = LocalStorage(shared_dir)
    shared = await load_shared_compile(storage, settings)
    step = torch.compile(lambda x: torch.nn.functional.silu(x) * 2 + x.sin())
    step(torch.randn(64, 64))
    scales = settings.resolved_compile_cache_dir / float8_scales_name(settings)
    if not scales.exists():
        scales.write_text(json.dumps({"calibrated on": str(host)}))
    published = await publish_shared_compile(storage, shared, settings)
    print(json.dumps({
        "found": shared.kernels_found, "published": published,
        "hits": counters["inductor"]["fxgraph_cache_hit"], "misses": counters["inductor"]["fxgraph_cache_miss"],
        "scales": scales.read_text(),
    }))

asyncio.run(start())
"""


# One worker start whose operators compile one of the project's Triton kernels (the feed-forward gate's, forward and
# backward: what a GPU worker's training warm-up compiles), built for an H200 as a GPU host would build it (Triton's
# compiler needs no GPU), between loading what is shared and publishing. It reports the cache files it wrote.
START_KERNELS = """
import asyncio, json, os, sys
from pathlib import Path
from bench.kernel_compile import H200, compile_launches, sdxl_launches
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.worker.compile_share import load_shared_compile, own_triton_kernels, publish_shared_compile

host, shared_dir = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(
    _env_file=None, model="tiny", data_dir=host / "data", compile_cache_dir=host / "compile", device="cpu",
    compile_unet=True, compile_backend="inductor", share_compiled=True,
)

def files(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}

async def start():
    storage = LocalStorage(shared_dir)
    shared = await load_shared_compile(storage, settings)
    folder = Path(os.environ["TRITON_CACHE_DIR"])
    before = files(folder)
    module, calls = sdxl_launches()["geglu, training"]
    compile_launches(module, calls, H200)
    written = [path for path, stamp in files(folder).items() if before.get(path) != stamp]
    await publish_shared_compile(storage, shared, settings)
    print(json.dumps({
        "found": len(shared.triton_found), "own": len(own_triton_kernels(folder)), "written": len(written),
        "in_compile_folder": folder.is_relative_to(settings.resolved_compile_cache_dir.resolve()),
    }))

asyncio.run(start())
"""


def worker_start(host: Path, shared: Path, script: str = START) -> dict[str, Any]:
    kept = ("HEADSHOT_", "TORCHINDUCTOR_", "TRITON_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(kept)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(host), str(shared)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(900)
def test_a_second_hosts_start_hits_what_the_first_compiled_and_gets_its_fp8_scales(tmp_path: Path) -> None:
    shared = tmp_path / "storage"
    first = worker_start(tmp_path / "host-1", shared)
    assert not first["found"] and first["misses"] == 1 and first["published"] > 0  # compiled, then shared
    second = worker_start(tmp_path / "host-2", shared)
    # The second host's compile folder was empty: its graph came from the first host's artifacts.
    assert second["found"] and second["hits"] == 1 and second["misses"] == 0
    assert second["published"] == 0  # nothing new to share
    assert second["scales"] == first["scales"]  # calibrated once, on the first host
    [kernels] = list((shared / "compiled").rglob("*.bin"))
    assert "cpu" in kernels.name and kernels.parent.name.startswith("tiny-")


@pytest.mark.timeout(900)
def test_a_second_host_finds_the_project_triton_kernels_the_first_compiled(tmp_path: Path) -> None:
    pytest.importorskip("triton", reason="the Triton kernels need triton: `make test` installs it")
    shared = tmp_path / "storage"
    first = worker_start(tmp_path / "host-1", shared, START_KERNELS)
    assert first["found"] == 0 and first["own"] == 2 and first["written"] > 0  # compiled into the worker's folder
    assert first["in_compile_folder"]
    [blob] = list((shared / "compiled").rglob("*-triton.tar.gz"))
    published = blob.stat().st_mtime_ns
    second = worker_start(tmp_path / "host-2", shared, START_KERNELS)
    # The second host's folder was empty: both kernels came from the first host, and Triton compiled neither again.
    assert second["found"] == 2 and second["own"] == 2 and second["written"] == 0
    assert blob.stat().st_mtime_ns == published  # nothing new to share


def test_sharing_left_unset_follows_the_storage_and_needs_inductor(tmp_path: Path) -> None:
    def settings(**values: Any) -> Settings:
        return Settings(_env_file=None, data_dir=tmp_path, compile_unet=True, **values)  # type: ignore[call-arg]

    assert not shares_compile(settings(), "cpu")  # local storage: the local compile folder serves
    assert shares_compile(settings(storage_backend="s3", s3_bucket="pool"), "cpu")  # workers on other hosts
    assert not shares_compile(settings(storage_backend="s3", s3_bucket="pool", share_compiled=False), "cpu")
    assert shares_compile(settings(share_compiled=True), "cpu")
    assert not shares_compile(settings(share_compiled=True, compile_backend="eager"), "cpu")  # nothing to share
    eager = Settings(_env_file=None, data_dir=tmp_path, share_compiled=True)  # type: ignore[call-arg]
    assert not shares_compile(eager, "cpu")  # a CPU worker left at the defaults compiles nothing


def test_the_shared_set_is_keyed_by_the_settings_that_decide_the_graphs(tmp_path: Path) -> None:
    def key(**values: Any) -> str:
        settings = Settings(_env_file=None, data_dir=tmp_path, compile_unet=True, **values)  # type: ignore[call-arg]
        return set_up_hash(settings, "cuda:0")

    assert key() == key(bot_consumer="another-bot")  # nothing of the graphs
    assert key() != key(warm_aspects="square")  # other shapes warmed: other graphs
    assert key() != key(compile_scope="unet")
    assert key() != key(train_cuda_graphs=False)  # unset is on at an H200's batch 16
    assert key() != key(render_cuda_graphs=False)  # unset is on at 72 GiB or more
    assert key() != key(compile_render_glue=True)  # the glue's graphs besides
    assert key() != key(unet_channels_last=False)  # unset is channels-last by blocks with both sets of graphs
