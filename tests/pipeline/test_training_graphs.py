"""A worker's training steps replayed from CUDA graphs train the LoRA the plain steps train, job after job.

CUDA graphs exist only on a GPU: on a CPU machine (CI) the GPU test is skipped and only the refusal runs. The GPU
test trains the tiny model in bf16 through the worker's own path (rendering slot, training slot, blocks compiled by
inductor), once with the slot's graphs and once without, from the same seed.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.diffusion.training.slot import TrainingSlot

on_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")

RECIPE = TrainingConfig(rank=4, steps=8, batch_size=2, seed=3)


def test_training_graphs_for_a_slot_on_the_cpu_are_refused_by_name(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    LoraSlot(pipe, max_rank=8)
    with pytest.raises(ValueError, match="need the LoRA's weights on a CUDA device, but they are on cpu"):
        TrainingSlot(pipe, rank=4, compile_backend="eager", cuda_graphs=True)


@on_gpu
def test_replayed_training_matches_the_plain_steps_user_after_user(
    model_cache_dir: Path, selfie_images: list[Any], tmp_path: Path, fresh_dynamo: None
) -> None:
    def worker(graphs: bool) -> tuple[Any, TrainingSlot]:
        pipe = load_base_pipeline("tiny", device="cuda", dtype="bfloat16", cache_dir=model_cache_dir)
        LoraSlot(pipe, max_rank=8)
        return pipe, TrainingSlot(pipe, rank=RECIPE.rank, compile_scope="blocks", cuda_graphs=graphs)

    plain_pipe, plain_slot = worker(False)
    graphed_pipe, graphed_slot = worker(True)
    assert graphed_slot.graphs is not None and plain_slot.graphs is None
    # As a worker's start: a warm-up job under ``warming()`` captures nothing, the next job captures every shape
    # the warm-up saw without warm-up runs of its own, and the third replays them.
    for job, images in (("warm-up", selfie_images[:2]), ("first", selfie_images[2:4]), ("second", selfie_images[4:6])):
        plain = train_lora(plain_pipe, images, RECIPE, tmp_path / f"plain-{job}", slot=plain_slot)
        with graphed_slot.graphs.warming() if job == "warm-up" else contextlib.nullcontext():
            graphed = train_lora(graphed_pipe, images, RECIPE, tmp_path / f"graphed-{job}", slot=graphed_slot)
        # bf16 kernels launched from Python or replayed compute the same sums; only the order of float32 updates
        # in fused AdamW could differ, and does not here.
        assert graphed.losses == pytest.approx(plain.losses, rel=1e-3), job
        expected, got = load_file(plain.lora_path), load_file(graphed.lora_path)
        assert got.keys() == expected.keys()
        assert all(torch.allclose(got[key], expected[key], rtol=1e-3, atol=1e-5) for key in expected), job
        if job == "warm-up":
            assert graphed_slot.graphs.captured == 0
        elif job == "first":
            captured = graphed_slot.graphs.captured
            assert captured >= 1  # one graph per batch shape the jobs drew
        # Between jobs nothing of the user stays: the kept gradients are zero, as the LoRA's weights are.
        assert all(not gradient.any() for gradient in graphed_slot.graphs.gradients), job
    # The second job's shapes were the first's (the same buckets of square crops): it captured nothing new.
    assert graphed_slot.graphs.captured == captured


def test_a_worker_captures_its_largest_bucket_first(model_cache_dir: Path) -> None:
    from jobs.worker.training_setup import capture_order
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.training.dataset import BUCKET_ASPECTS

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    for config in (RECIPE, TrainingConfig(rank=4, resolution=1024)):
        order = capture_order(pipe, config)
        areas = [math.prod(headshot_size(pipe, aspect, native=config.resolution)) for aspect in order]
        assert sorted(order) == sorted(BUCKET_ASPECTS)
        assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1], (config.resolution, order, areas)


def test_a_worker_compiles_the_bucket_of_a_phones_portrait_photo_first(model_cache_dir: Path) -> None:
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.training.dataset import BUCKET_ASPECTS, PHONE_BUCKET, WARM_UP_ORDER, bucket_size

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    # A 12 MP phone camera's portrait photo, and one as Telegram sends it (longest side 1280), fall in that bucket.
    for width, height in ((3024, 4032), (960, 1280)):
        assert bucket_size(pipe, width, height) == headshot_size(pipe, PHONE_BUCKET)
    assert WARM_UP_ORDER[0] == PHONE_BUCKET and sorted(WARM_UP_ORDER) == sorted(BUCKET_ASPECTS)
