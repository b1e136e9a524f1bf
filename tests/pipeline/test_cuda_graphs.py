"""UNet calls replayed from CUDA graphs render what the compiled pipeline renders, for every user in turn.

CUDA graphs exist only on a GPU: on a CPU machine (CI) the GPU test is skipped and only the refusal runs. The GPU
test runs on the tiny model through the worker's own path (a merging LoRA slot, regions compiled by inductor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.styles import STYLES
from tests.pipeline.test_generation import difference

on_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")


def test_a_denoiser_on_the_cpu_is_refused_by_name(tiny_pipe: Any) -> None:
    from pipeline.diffusion.cuda_graphs import DenoiserGraphs

    with pytest.raises(ValueError, match="need the denoiser on a CUDA device, but it is on the CPU"):
        DenoiserGraphs(tiny_pipe.unet)


@on_gpu
# FP8 (static scales, as a worker on FP8 tensor cores renders by default): the slot's merges requantize the FP8
# copies in place, so the captured graphs must still see every user's weights.
# Norms: the group norms through ``headshot::group_norm`` (``NoGradGroupNorm``), in NCHW blocks with the glue between
# them compiled for rendering, as a worker with HEADSHOT_RENDER_CUDA_GRAPHS renders; the operator's kernels and the
# glue's are then captured and replayed too.
@pytest.mark.parametrize(
    ("float8", "norms"), [(False, False), (True, False), (True, True)], ids=["bf16", "fp8", "fp8-norms"]
)
def test_replayed_requests_match_the_compiled_pipeline_user_after_user(
    model_cache: Path, tmp_path: Path, fresh_dynamo: None, float8: bool, norms: bool
) -> None:
    from bench.benchmark_request import user_lora_file
    from pipeline.diffusion.acceleration import optimize_for_inference
    from pipeline.diffusion.cuda_graphs import DenoiserGraphs
    from pipeline.diffusion.float8 import fp8_tensor_cores, use_float8_linears
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.serving import calibrate_float8_on_looks

    pipe = load_base_pipeline("tiny", device="cuda", cache_dir=model_cache)
    slot = LoraSlot(pipe, max_rank=8)
    if float8:
        if not fp8_tensor_cores(pipe.unet.device):
            pytest.skip("FP8 products need FP8 tensor cores (Ada, Hopper and newer)")
        use_float8_linears(pipe.unet, scaling="static")
        calibrate_float8_on_looks(pipe, [STYLES["linkedin"]])
    if norms:
        use_group_norm_operator(pipe.unet, no_grad=True)
    optimize_for_inference(pipe, compile_scope="blocks" if norms else "regions", render_glue=norms)
    # Strong random LoRAs: two users whose headshots differ visibly, so a graph that kept the first user's weights
    # (or none) would show.
    users = [user_lora_file(slot, tmp_path / f"user{seed}", rank=8, seed=seed, scale=0.3) for seed in (1, 2)]

    def request(lora: Path | None) -> list[Any]:
        generated = generate_headshots(
            pipe, STYLES["linkedin"], count=2, seed=5, batch_size=2, steps=4, lora_path=lora, lora_slot=slot
        )
        return [image.image for image in generated]

    calls: list[tuple[Any, Any]] = []
    hook = pipe.unet.register_forward_pre_hook(lambda _, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    compiled = {user: request(user) for user in users}
    hook.remove()
    apart = difference(compiled[users[0]][0], compiled[users[1]][0])
    assert apart > 2, apart  # the two users' headshots really differ

    graphs = DenoiserGraphs(pipe.unet)
    with slot.merged_base():  # the worker's warm-up: the shape is captured here
        request(None)
    assert graphs.captured == 1
    for user in [*users, users[0]]:
        replays = graphs.replays
        for replayed, reference in zip(request(user), compiled[user], strict=True):
            assert difference(replayed, reference) < 0.5, (user, difference(replayed, reference), apart)
        assert graphs.replays - replays == 4  # every step of the request replayed, none ran the UNet itself

    # With gradients on (a training step through the same UNet) a call of the captured shape runs the UNet itself.
    args, kwargs = calls[0]
    replays = graphs.replays
    with torch.enable_grad():
        (prediction,) = pipe.unet(*args, **kwargs)
    assert graphs.replays == replays and prediction.shape == args[0].shape
    graphs.uninstall()
    assert pipe.unet._compiled_call_impl is None
