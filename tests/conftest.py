"""Fixtures that start real parts: a real redis-server (or REDIS_URL), the real tiny pipeline, real photos."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.local.samples import make_sample_selfies
from jobs.ops.redis_server import EmbeddedRedis
from jobs.settings import Settings

# `make test` runs two pytest-xdist workers on CI's two cores: one thread each for torch (imported later, by the tests)
# and the worker processes they start, instead of each of them spreading over both cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The slowest files (a minute or more each on CI), handed out first: `--dist loadfile` gives each worker the next file
# in collection order, and a slow file collected last ran alone for minutes while the other core idled.
SLOWEST_FIRST = (
    "tests/jobs/test_model_setup.py",
    "tests/faults/test_worker_killed.py",
    "tests/bench/test_benchmark.py",
    "tests/pipeline/test_acceleration.py",
    "tests/pipeline/test_img2img.py",
    "tests/pipeline/test_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: every other file keeps its place and every file its tests' order


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on a flushed database, so each test starts with an empty queue and stream."""
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def selfie_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("selfies")
    make_sample_selfies(folder, count=4)
    return folder


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, model_cache: Path) -> Settings:
    """Small numbers so a whole train + render runs in seconds on a CPU with the tiny model."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "data_dir": tmp_path / "data",
        "model_cache_dir": model_cache,
        "model": "tiny",
        "min_selfies": 3,
        "max_selfies": 5,
        "train_steps": 20,
        "inference_steps": 2,
        "headshots_per_request": 2,
        # No render queued by itself when training ends: most tests train to reach READY and go on from there. The
        # first headshots' own tests turn them on (tests/bot/test_first_headshots.py, the local chat's flow).
        "first_headshots": 0,
        "progress_interval_s": 0.0,
        # In-process workers search faces in a thread with their analyzer; the process pool has its own tests
        # (tests/jobs/test_face_search.py), and subprocess workers run it at its default.
        "face_search_processes": 0,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def tiny_pipe(model_cache: Path) -> Any:
    """The real tiny SDXL pipeline, loaded once and shared by every in-process worker of the session."""
    from pipeline.diffusion.loading import load_base_pipeline

    return load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)


@pytest.fixture(scope="session")
def tiny_model(model_cache: Path) -> Any:
    """The tiny model as a worker prepares it (its own pipeline, the rendering slot, the training plan), once per
    session and shared by every in-process worker, so test jobs render through the production LoRA path."""
    from jobs.worker.model_setup import prepare_model

    return prepare_model(Settings(_env_file=None, model="tiny", device="cpu", model_cache_dir=model_cache))  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def klein_model(model_cache: Path) -> Any:
    """The tiny FLUX.2 [klein] as a worker prepares it, shared by the klein workers of the session."""
    from jobs.worker.model_setup import prepare_model

    return prepare_model(Settings(_env_file=None, model="tiny-flux2", device="cpu", model_cache_dir=model_cache))  # type: ignore[call-arg]


@pytest.fixture
async def harness(settings: Settings, tiny_model: Any, tmp_path: Path, redis: Redis) -> AsyncIterator[Any]:
    from tests.harness import Harness

    async with Harness(settings, tiny_model, tmp_path / "out") as running:
        yield running


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """An empty torch.compile cache before and after: each compiling test counts only its own graphs, and the many
    tiny pipelines of a test session never fill dynamo's per-function cache (past it, dynamo silently runs eager)."""
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
