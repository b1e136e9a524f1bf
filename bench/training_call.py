"""One UNet training call, as ``bench.benchmark_unet_training`` times it: the call itself (forward and backward under
autocast, as a training step runs them), the same replayed from a CUDA graph as a worker's training slot replays its
steps, its seconds and its kernels by kind."""

from __future__ import annotations

import functools
from typing import Any

from bench.measure import measured
from bench.profiling import kernel_summary, kernel_times

__all__ = ["capture_training_call", "training_call", "training_call_seconds", "training_profile"]


def training_call_seconds(
    pipe: Any,
    inputs: dict[str, Any],
    lora: list[Any],
    *,
    label: str,
    repeats: int = 6,
    graphed: bool = False,
) -> tuple[dict[str, Any], Any, Any]:
    """The first training call and the median of ``repeats`` more; also the LoRA's gradient of the last call, and
    the call itself. ``graphed``: the first call captures it in a CUDA graph (``capture_training_call``), the others
    replay it."""
    import torch

    device = str(pipe.unet.device)
    with measured(device) as first:
        if graphed:
            call = capture_training_call(pipe, inputs, lora)
        else:
            call = functools.partial(training_call, pipe, inputs, lora)
        call()
    seconds = []
    for _ in range(repeats):
        with measured(device) as timed:
            call()
        seconds.append(timed.seconds)
    median = sorted(seconds)[len(seconds) // 2]
    batch = inputs["sample"].shape[0]
    figures = {
        "variant": label,
        "first_call_s": round(first.seconds, 1),
        "call_s": round(median, 4),
        "image_steps_per_s": round(batch / median, 2),
        "peak_gib": round(first.peak_gib, 1),
    }
    return figures, torch.cat([param.grad.flatten().double() for param in lora]), call


def training_call(pipe: Any, inputs: dict[str, Any], lora: list[Any]) -> None:
    """Forward and backward as a training step runs them (under autocast on a GPU), gradients fresh."""
    import torch

    for param in lora:
        param.grad = None
    with torch.autocast("cuda", dtype=pipe.unet.dtype, enabled=pipe.unet.device.type == "cuda"):
        out = pipe.unet.forward(**inputs).sample
    out.float().pow(2).mean().backward()


def capture_training_call(pipe: Any, inputs: dict[str, Any], lora: list[Any]) -> Any:
    """The training call replayed from a CUDA graph as a worker's training slot replays its steps
    (``training.graphs.TrainingGraphs``: captured at the first call, the LoRA's ``.grad`` the kept gradients);
    return the call, which captures at its first run."""
    from pipeline.diffusion.training.graphs import TrainingGraphs

    graphs = TrainingGraphs(lora)
    # The graph's inputs are flat tensors; the UNet takes SDXL's two added conditions in a dict of their own.
    added = inputs["added_cond_kwargs"]
    tensors = {**{key: value for key, value in inputs.items() if key != "added_cond_kwargs"}, **added}

    def loss_of(**given: Any) -> Any:
        conditions = {key: given.pop(key) for key in added}
        return pipe.unet.forward(**given, added_cond_kwargs=conditions).sample.float().pow(2).mean()

    return functools.partial(graphs.step, loss_of, tensors, autocast_dtype=pipe.unet.dtype)


def training_profile(
    pipe: Any, inputs: dict[str, Any], lora: list[Any], *, label: str, call: Any = None
) -> dict[str, Any]:
    """GPU kernel time of 3 training calls (``call``, else ``training_call``) by kind, and the costliest kernels,
    overall and of each kind (``bench.profiling.kernel_summary``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    call = call or functools.partial(training_call, pipe, inputs, lora)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        for _ in range(3):
            call()
        torch.cuda.synchronize()
    times = kernel_times(profiler, on_cuda=True)
    return {"variant": f"profile: {label}", **kernel_summary(times, unit="ms_per_call", scale=1 / 3000, costliest=10)}
