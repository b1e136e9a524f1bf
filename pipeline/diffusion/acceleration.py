"""Making a loaded pipeline render faster on a GPU: TF32 maths, channels-last memory, optional fused QKV, compile.

Order matters on a worker that hot-swaps users' LoRAs: build the ``LoraSlot`` first, then call
``optimize_for_inference(pipe, compile=True)``, so the compiled graph already contains the slot's LoRA layers and
later swaps only copy weights (no recompilation). On a CPU every switch that only helps GPUs is skipped, so the same
call is safe for the tiny test model.

``fuse_qkv`` defaults to off: diffusers' fused attention computes q, k and v with a new ``to_qkv`` layer made from
the base weights, so LoRA layers on ``to_q``/``to_k``/``to_v`` (every user's, and the slot's) would silently stop
having any effect. It is refused while any LoRA adapter is loaded, and generation refuses a LoRA on a fused pipeline.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COMPILE_SCOPES",
    "SERVING_COMPILE_MODE",
    "check_compile_scope",
    "compile_unet_blocks",
    "is_qkv_fused",
    "optimize_for_inference",
    "use_channels_last",
    "use_fast_maths",
]

# What a worker compiles with: 'default' compiled SDXL's merged-LoRA UNet in 165 s and rendered a 4-image request in
# 4.69 s against 5.61 s eager (H100, BENCHMARKS.md). The autotuning modes compile for many minutes more (over 4 for
# 'max-autotune-no-cudagraphs' in the first session); CUDA graphs ('reduce-overhead') re-record for every batch size.
SERVING_COMPILE_MODE = "default"

# What "compiling the UNet" compiles: "unet", the whole module (SDXL: 117 s on an H100, a call 0.1355 s), or
# "blocks", each repeated transformer block (diffusers' regional compilation: 12.5 s, a call 0.1432 s; same run,
# BENCHMARKS.md fifth session).
COMPILE_SCOPES = ("unet", "blocks")

# All of a UNet's transformer blocks run one ``forward`` code object, so dynamo keeps their graphs in one cache: one
# per input shape family, grad mode, train/eval flag and active LoRA adapter (6 on the tiny model's worker). Past
# torch's default limit of 8 it would silently run the blocks eagerly.
BLOCK_RECOMPILE_LIMIT = 64


def is_qkv_fused(pipe: Any) -> bool:
    """Whether ``fuse_qkv_projections`` is in effect on the UNet (a LoRA on q/k/v would then be ignored)."""
    processors = getattr(pipe.unet, "attn_processors", {})
    return any(type(processor).__name__.startswith("Fused") for processor in processors.values())


def optimize_for_inference(
    pipe: Any,
    *,
    compile: bool,
    fuse_qkv: bool = False,
    channels_last: bool = True,
    compile_mode: str = SERVING_COMPILE_MODE,
    compile_backend: str = "inductor",
    float8: bool = False,
    compile_scope: str = "unet",
) -> None:
    """Speed ``pipe`` up in place for rendering; call once at worker start-up, after creating any ``LoraSlot``.

    ``float8`` makes the UNet's transformer layers multiply in FP8 when rendering (``pipeline.diffusion.float8``);
    it pays only compiled, where the per-row scaling fuses into few kernels.
    ``compile_scope`` is one of ``COMPILE_SCOPES``.

    Raises ``ValueError`` for ``fuse_qkv=True`` while a LoRA adapter is loaded, since fusing would ignore it, and for
    an unknown ``compile_scope``.
    """
    import torch

    from pipeline.diffusion.adapters import loaded_adapters

    # 1. Check inputs.
    if fuse_qkv and loaded_adapters(pipe):
        raise ValueError(
            f"fuse_qkv=True would make the loaded LoRA adapters ({', '.join(sorted(loaded_adapters(pipe)))}) have "
            "no effect; use fuse_qkv=False on a pipeline that renders with LoRAs."
        )
    check_compile_scope(compile_scope)
    on_cuda = pipe.unet.device.type == "cuda"
    # Inference mode, as a checkpoint loads: compiled graphs guard on each module's ``training`` flag, and training
    # a LoRA ends with ``eval()``, so graphs compiled on a model built in training mode (random SDXL) recompiled
    # after a worker's first training job (145 s on an H100, BENCHMARKS.md).
    pipe.unet.eval()
    pipe.vae.eval()

    # 2. Process-wide maths switches: TF32 matmuls and convolutions for whatever still runs in float32 (the VAE's
    #    upcast decode, LoRA layers in training). Half-precision work is unaffected.
    use_fast_maths(pipe)

    # 3. Structure: fused projections (base-only pipelines) and channels-last convolutions (faster cuDNN kernels).
    if fuse_qkv and not is_qkv_fused(pipe):
        pipe.fuse_qkv_projections()
    if channels_last:
        use_channels_last(pipe)
    if float8:
        from pipeline.diffusion.float8 import use_float8_linears

        use_float8_linears(pipe.unet)

    # 4. Compile the UNet in place (``Module.compile`` keeps ``pipe.unet`` the same object, so LoRA loading, the
    #    slot and training still find it) and the VAE decoder. The inductor settings are those diffusers' SDXL
    #    speed tutorial uses. The first render afterwards pays the compilation.
    if compile:
        # The tutorial's coordinate-descent tuning only pays with autotuning; on SDXL it made the default mode's first
        # compile run past 15 minutes on an H100 (BENCHMARKS.md), so it stays off otherwise.
        if on_cuda and compile_mode.startswith("max-autotune"):
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True
            inductor.coordinate_descent_tuning = True
            inductor.epilogue_fusion = False
            inductor.coordinate_descent_check_all_directions = True
        # Modes are inductor's; another backend (tests use "eager": tracing and guards only) takes none.
        mode = compile_mode if on_cuda and compile_backend == "inductor" else None
        if compile_scope == "blocks":
            compile_unet_blocks(pipe.unet, mode=mode, backend=compile_backend)
        else:
            pipe.unet.compile(mode=mode, fullgraph=False, backend=compile_backend)
        if not getattr(pipe.vae.decode, "_torchdynamo_orig_callable", None):
            pipe.vae.decode = torch.compile(pipe.vae.decode, mode=mode, backend=compile_backend)


def check_compile_scope(compile_scope: str) -> None:
    """Raise ``ValueError`` naming ``compile_scope`` unless it is one of ``COMPILE_SCOPES``."""
    if compile_scope not in COMPILE_SCOPES:
        raise ValueError(f"compile_scope must be one of {COMPILE_SCOPES}, but is {compile_scope!r}.")


def use_fast_maths(pipe: Any) -> None:
    """On a GPU: TF32 for float32 matmuls and convolutions, cuDNN's autotuner; nothing on a CPU. Process-wide.

    Call it before compiling anything, training included: compiled graphs guard on these switches, and a worker's
    training graphs compiled before serving's set-up turned TF32 on were all recompiled at its first user's
    training (30 s on an H100, BENCHMARKS.md).
    """
    import torch

    if pipe.unet.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def use_channels_last(pipe: Any) -> None:
    """UNet and VAE weights in channels-last layout on a GPU (cuDNN's fastest convolutions); nothing on a CPU.

    Do it before compiling anything, training included: graphs guard on their weights' strides, so a layout change
    after a compile recompiles at the next call.
    """
    import torch

    if pipe.unet.device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)


def compile_unet_blocks(unet: Any, *, mode: str | None = None, backend: str = "inductor") -> int:
    """Compile each of ``unet``'s repeated transformer blocks in place (those not compiled yet); return how many.

    Training and rendering share these compiled blocks: a block called with gradients on gets graphs of its own.
    """
    import torch._dynamo.config

    repeated = set(getattr(unet, "_repeated_blocks", ()))
    if not repeated:
        raise ValueError(f"{type(unet).__name__} names no repeated blocks to compile; use compile_scope='unet' for it.")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, BLOCK_RECOMPILE_LIMIT)
    compiled = 0
    for module in unet.modules():
        if type(module).__name__ in repeated and module._compiled_call_impl is None:
            # fullgraph: a graph break inside a block would split every one of them, silently slower.
            module.compile(mode=mode, fullgraph=True, backend=backend)
            compiled += 1
    return compiled
