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

__all__ = ["COMPILE_MODE", "is_qkv_fused", "optimize_for_inference"]

# Autotuned kernels without CUDA graphs: CUDA graphs would pin the LoRA weights' memory addresses across calls,
# which hot-swapping respects, but they also re-record for every new batch size and fight with training on the same
# UNet; autotuning gives most of the gain on its own.
COMPILE_MODE = "max-autotune-no-cudagraphs"


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
    compile_mode: str = COMPILE_MODE,
) -> None:
    """Speed ``pipe`` up in place for rendering; call once at worker start-up, after creating any ``LoraSlot``.

    Raises ``ValueError`` for ``fuse_qkv=True`` while a LoRA adapter is loaded, since fusing would ignore it.
    """
    import torch

    from pipeline._adapters import loaded_adapters

    # 1. Check inputs.
    if fuse_qkv and loaded_adapters(pipe):
        raise ValueError(
            f"fuse_qkv=True would make the loaded LoRA adapters ({', '.join(sorted(loaded_adapters(pipe)))}) have "
            "no effect; use fuse_qkv=False on a pipeline that renders with LoRAs."
        )
    on_cuda = pipe.unet.device.type == "cuda"

    # 2. Process-wide maths switches: TF32 matmuls and convolutions for whatever still runs in float32 (the VAE's
    #    upcast decode, LoRA layers in training). Half-precision work is unaffected.
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    # 3. Structure: fused projections (base-only pipelines) and channels-last convolutions (faster cuDNN kernels).
    if fuse_qkv and not is_qkv_fused(pipe):
        pipe.fuse_qkv_projections()
    if channels_last and on_cuda:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)

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
        pipe.unet.compile(mode=compile_mode if on_cuda else None, fullgraph=False)
        if not getattr(pipe.vae.decode, "_torchdynamo_orig_callable", None):
            pipe.vae.decode = torch.compile(pipe.vae.decode, mode=compile_mode if on_cuda else None)
