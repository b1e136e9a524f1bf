"""``python -m bench.kernel_compile``: the project's Triton kernels compiled for the H200 on any machine, each with
the registers ptxas gives it, its spills, and how many of its warps an SM then holds.

Triton's compiler (to PTX, and ptxas, shipped in triton's wheel, to a cubin) needs no GPU. ``compile_launches`` runs
a kernel module's host functions on meta tensors at real sizes, records each launch instead of making it, and compiles
it with the argument types, sizes, tile constants and alignment specialisations a real launch has
(``tests/pipeline/test_kernels_compile.py`` holds every kernel to no spills and 16 resident warps). Registers and
residency are the compiler's figures, not timings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "GRID_LIMITS",
    "H200",
    "REGISTERS_AN_SM",
    "compile_launches",
    "main",
    "ptxas_figures",
    "resident_warps",
    "sdxl_launches",
]

# An H200's (and an H100's) compute capability, 9.0, and warp size.
H200 = ("cuda", 90, 32)

_TYPES = {
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float32: "fp32",
    torch.float8_e4m3fn: "fp8e4nv",
    torch.float8_e5m2: "fp8e5",
    torch.int8: "i8",
    torch.int32: "i32",
    torch.int64: "i64",
}


# A CUDA grid's largest size on each axis: the first takes 2**31 - 1 programs, the other two 65,535.
GRID_LIMITS = (2**31 - 1, 65535, 65535)


class _Launch:
    """Stands in for one kernel: records each ``kernel[grid](*args, **options)`` instead of running it, and refuses a
    grid CUDA would refuse ("invalid argument" at the launch, on the GPU only)."""

    def __init__(self, kernel: Any, launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> None:
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        if any(size > limit for size, limit in zip(grid, GRID_LIMITS, strict=False)):
            raise ValueError(f"{self.kernel.__name__}'s grid {grid} passes CUDA's limits {GRID_LIMITS}.")
        return lambda *args, **options: self.launches.append((self.kernel, args, options))


def _signature(
    kernel: Any, args: tuple[Any, ...], options: dict[str, Any]
) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int], list[list[Any]]]]:
    """Triton's signature of one launch (each argument's type, "constexpr" for the tile sizes), its constants, and the
    attributes Triton's launcher specialises on: a pointer 16-byte aligned (a real allocation is) and an integer
    divisible by 16 compile as such, which lets the compiler vectorise their loads."""
    values = dict(zip(kernel.arg_names, args, strict=False))
    values.update({name: value for name, value in options.items() if name in kernel.arg_names})
    signature, constants, attributes = {}, {}, {}
    for index, param in enumerate(kernel.params):
        value = values[param.name]
        if param.is_constexpr or value is None:  # a None pointer is a constant, as Triton's launcher makes it
            signature[param.name], constants[param.name] = "constexpr", value
            continue
        if isinstance(value, torch.Tensor):
            signature[param.name] = "*" + _TYPES[value.dtype]
            aligned = value.storage_offset() * value.element_size() % 16 == 0
        elif type(value).__name__ == "TensorDescriptor":  # a host-made TMA descriptor: its type names dtype and tile
            from triton.runtime.jit import mangle_type  # type: ignore[import-not-found,unused-ignore]

            signature[param.name], aligned = mangle_type(value), False
        elif isinstance(value, float):
            signature[param.name], aligned = "fp32", False
        else:
            signature[param.name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            aligned = value % 16 == 0
        if aligned:
            attributes[(index,)] = [["tt.divisibility", 16]]
    return signature, constants, attributes


def compile_launches(module: str, calls: list[tuple[str, tuple[Any, ...]]], target: tuple[str, int, int]) -> list[Any]:
    """Compile, for ``target`` (backend, compute capability, warp size), every kernel launch that ``module``'s
    ``calls`` make (``module`` a ``pipeline.diffusion`` module's name, or any module's full name), with the argument
    types, sizes and tile constants they launch with; returns the compiled kernels (their ``asm`` holds the PTX and
    the cubin). The calls run on meta tensors, so real sizes cost no memory."""
    import triton  # type: ignore[import-not-found,unused-ignore]
    from triton.backends.compiler import GPUTarget  # type: ignore[import-not-found,unused-ignore]
    from triton.compiler import ASTSource  # type: ignore[import-not-found,unused-ignore]
    from triton.runtime.jit import JITFunction  # type: ignore[import-not-found,unused-ignore]

    loaded = importlib.import_module(module if "." in module else f"pipeline.diffusion.{module}")
    kernels = {name: value for name, value in vars(loaded).items() if isinstance(value, JITFunction)}
    launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    try:  # only while the host code runs: the kernels' own calls to helpers resolve through these names too
        for name, kernel in kernels.items():
            setattr(loaded, name, _Launch(kernel, launches))
        for function, args in calls:
            getattr(loaded, function)(*args)
    finally:
        for name, kernel in kernels.items():
            setattr(loaded, name, kernel)
    compiled = []
    for kernel, args, options in launches:
        signature, constants, attributes = _signature(kernel, args, options)
        source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attributes)
        settings = {name: value for name, value in options.items() if name not in kernel.arg_names}
        compiled.append(triton.compile(source, target=GPUTarget(*target), options=settings))
    return compiled


REGISTERS_AN_SM = 65536  # an H100's and an H200's register file, per SM


def resident_warps(registers: int, warps: int) -> int:
    """Warps of one kernel an SM holds at once, as its registers allow (a warp's registers are allocated in units of
    256, and an SM holds at most 64 warps)."""
    a_warp = -(-registers * 32 // 256) * 256
    return min(REGISTERS_AN_SM // (a_warp * warps) * warps, 64)


def ptxas_figures(log: str, compiled: list[Any]) -> dict[str, dict[str, int]]:
    """Each of ``compiled``'s kernels' registers, spill stores (bytes) and resident warps, from ptxas's verbose
    ``log`` of their compiles (Triton prints it with ``TRITON_DUMP_PTXAS_LOG=1``; compile with
    ``TRITON_ALWAYS_COMPILE=1`` so none is taken from the cache unlogged)."""
    pattern = r"properties for (\w+)\n\s*\d+ bytes stack frame, (\d+) bytes spill stores.*\n.*Used (\d+) registers"
    found = re.findall(pattern, log)
    if len(found) != len(compiled):
        raise ValueError(f"ptxas reported {len(found)} kernels for {len(compiled)} compiled; was its log printed?")
    figures = {}
    for (name, spilled, registers), kernel in zip(found, compiled, strict=True):
        warps = kernel.metadata.num_warps
        figures[name] = {
            "warps": warps,
            "registers": int(registers),
            "spill_bytes": int(spilled),
            "resident_warps": resident_warps(int(registers), warps),
        }
    return figures


def sdxl_launches() -> dict[str, tuple[str, list[tuple[str, tuple[Any, ...]]]]]:
    """label -> (kernel module, host calls) at SDXL's sizes: a training call's largest norms (batch 16, 1024 px) and a
    job's 20 selfie crops and an upscale's image through the VAE encoder's first norms, and an upscale's decode
    through the decoder's last, in both layouts; a render's and a training call's ResNet norm with its SiLU, and a
    render's ResNet norm writing an FP8 convolution's input; a render's ResNet residual add with its biases and its
    samplers' sub-pixel interleave; a render's transformer entries and exits; a feed-forward gate at batch 16; a
    LoRA's accumulations."""

    def meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> Any:
        return torch.empty(shape, device="meta", dtype=dtype)

    launches = {}
    for size, shape, dtype in (
        ("training", (16, 320, 128, 128), torch.bfloat16),
        ("encoder", (20, 128, 1024, 1024), torch.float32),
        ("an upscale's encode", (1, 128, 2304, 1856), torch.float32),  # 4.3 million pixels a channel
        ("an upscale's decode", (1, 128, 2304, 1856), torch.bfloat16),  # the worker's channels-last decoder
    ):
        for layout, module in (("nchw", "group_norm_kernel"), ("nhwc", "group_norm_nhwc_kernel")):
            memory = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            x = meta(*shape, dtype=dtype).contiguous(memory_format=memory)
            weight, stats = meta(shape[1], dtype=dtype), meta(shape[0], 32, dtype=torch.float32)
            launches[f"group norm {layout}, {size}"] = (
                module,
                [
                    (f"group_norm_forward_{layout}", (x, weight, weight, 32, 1e-5)),
                    (f"group_norm_backward_{layout}", (x, x, weight, stats, stats, 32)),
                ],
            )
    # A render's ResNet norm with its time embedding and SiLU (``resnet_glue``): CFG batch 8 at 928x1152; and a
    # training call's, forward and backward (``HEADSHOT_TRAIN_FUSED_RESNETS``): batch 8 in the 3:4 bucket. Each layout;
    # the shift float32 (the time embedding plus the first convolution's bias, ``resnet_glue._without_bias``).
    render_weight, stats, shift = meta(320), meta(8, 32, dtype=torch.float32), meta(8, 320, dtype=torch.float32)
    for layout, module in (("nchw", "group_norm_kernel"), ("nhwc", "group_norm_nhwc_kernel")):
        memory = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        rendered = meta(8, 320, 144, 116).contiguous(memory_format=memory)
        trained = meta(8, 320, 148, 112).contiguous(memory_format=memory)
        launches[f"group norm and SiLU {layout}, render"] = (
            module,
            [
                (f"group_norm_act_{layout}", (rendered, shift, render_weight, render_weight, 32, 1e-5)),
                (f"group_norm_act_{layout}", (rendered, None, render_weight, render_weight, 32, 1e-5)),
            ],
        )
        launches[f"group norm and SiLU {layout}, training"] = (
            module,
            [
                (f"group_norm_act_{layout}", (trained, shift, render_weight, render_weight, 32, 1e-5)),
                (
                    f"group_norm_act_backward_{layout}",
                    (trained, trained, shift, render_weight, render_weight, stats, stats, 32),
                ),
            ],
        )
    # A render's ResNet norm writing an FP8 convolution's input (``float8_conv``; channels-last only).
    rendered = meta(8, 320, 144, 116).contiguous(memory_format=torch.channels_last)
    scale = meta(dtype=torch.float32)
    launches["group norm and SiLU nhwc to FP8, render"] = (
        "group_norm_nhwc_kernel",
        [("group_norm_silu_float8_nhwc", (rendered, shift, render_weight, render_weight, 32, 1e-5, scale))],
    )
    # A fused ResNet block's end (``residual_bias_kernel``): the residual add with the convolutions' biases, a render's
    # (CFG batch 8 at 928x1152) at the first level and the last, whose 1,044 pixels are no multiple of 16; each layout.
    bias = meta(1280, dtype=torch.float32)
    for layout in ("nchw", "nhwc"):
        memory = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        first, last = (meta(*size).contiguous(memory_format=memory) for size in ((8, 320, 144, 116), (8, 1280, 36, 29)))
        launches[f"residual add with biases {layout}, render"] = (
            "residual_bias_kernel",
            [
                ("add_residual_bias", (first, first, bias[:320], layout == "nhwc")),
                ("add_residual_bias", (last, last, bias, layout == "nhwc")),
            ],
        )
    # A render's up-block samplers as sub-pixel convolutions (``upsample_glue``): their phases interleaved, CFG batch 8
    # at 928x1152, both samplers (channels-last only).
    for channels, height, width in ((1280, 29, 36), (640, 58, 72)):
        phases = meta(8, 4 * channels, height + 1, width + 1).contiguous(memory_format=torch.channels_last)
        launches[f"sub-pixel interleave, render, {channels} channels"] = (
            "subpixel_kernel",
            [("subpixel_interleave", (phases, bias[:channels], height, width))],
        )
    # A render's transformer entries and exits (``transformer_glue``): CFG batch 8 at 928x1152, both levels.
    for channels, height, width in ((640, 72, 58), (1280, 36, 29)):
        level, tokens = meta(8, channels, height, width), meta(8, height * width, channels)
        weight = meta(channels)
        launches[f"group norm to tokens, render, {channels} channels"] = (
            "token_layout_kernel",
            [("group_norm_to_tokens", (level, weight, weight, 32, 1e-6))],
        )
        launches[f"tokens moves, render, {channels} channels"] = (
            "token_layout_kernel",
            [
                ("nchw_to_tokens", (level,)),
                ("tokens_to_nchw", (tokens, level, height, width)),
                ("tokens_to_nchw", (tokens, None, height, width)),
            ],
        )
    projected = meta(16 * 4096, 2 * 2560)
    launches["geglu, training"] = (
        "geglu_kernel",
        [("geglu_forward_rows", (projected,)), ("geglu_backward_rows", (projected, projected[:, :2560]))],
    )
    # A LoRA'd projection's accumulations: its up-projection (peft's weight, transposed) into the output and its input
    # gradient, on the 640-wide image tokens of the first attention level, at a worker's rank and the kernel's largest.
    for rank in (16, 64):
        tokens, hidden = meta(16 * 4096, 640), meta(16 * 4096, rank)
        launches[f"lora accumulate, training, rank {rank}"] = (
            "lora_linear_kernel",
            [
                ("accumulate_product", (tokens, hidden, meta(640, rank).t(), 1.0)),
                ("accumulate_product", (tokens, hidden, meta(rank, 640), 1.0)),
            ],
        )
    return launches


def shared_timing() -> dict[str, float]:
    """Every launch of ``sdxl_launches`` compiled into an empty Triton cache, then again into another that holds only
    what the compile share hands a new host (``jobs.worker.compile_share``): seconds for each, and the blob's size."""
    import time

    from jobs.worker.compile_share import own_triton_kernels, pack_triton_kernels, unpack_triton_kernels

    def compile_all(folder: str) -> tuple[float, int]:
        os.environ["TRITON_CACHE_DIR"] = folder
        started, kernels = time.perf_counter(), 0
        for module, calls in sdxl_launches().values():
            kernels += len(compile_launches(module, calls, H200))
        return time.perf_counter() - started, kernels

    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        cold, kernels = compile_all(first)
        entries = own_triton_kernels(Path(first))
        blob = pack_triton_kernels(Path(first), entries)
        unpack_triton_kernels(blob, Path(second))
        shared, _ = compile_all(second)
    return {
        "kernels": kernels,
        "cache_entries": len(entries),
        "blob_mb": round(len(blob) / 1e6, 2),
        "cold_s": round(cold, 2),
        "from_shared_s": round(shared, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kernel_compile", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared", action="store_true", help="time the launches compiled cold and from a compile share's blob instead"
    )
    args = parser.parse_args(argv)
    if args.shared:
        print(json.dumps(shared_timing()), flush=True)
        return 0
    # ptxas's log goes to this process's stdout: read it back from a file descriptor of our own.
    os.environ.update({"TRITON_DUMP_PTXAS_LOG": "1", "TRITON_ALWAYS_COMPILE": "1"})
    results = {}
    for label, (module, calls) in sdxl_launches().items():
        with tempfile.TemporaryFile("w+") as log:
            saved = os.dup(1)
            os.dup2(log.fileno(), 1)
            try:
                compiled = compile_launches(module, calls, H200)
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            log.seek(0)
            results[label] = ptxas_figures(log.read(), compiled)
        print(json.dumps({label: results[label]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
