"""Making a loaded pipeline render faster on a GPU: TF32 maths, channels-last memory, compiled UNet and VAE decoder.

Order matters on a worker that hot-swaps users' LoRAs: build the ``LoraSlot`` first, then call
``optimize_for_inference(pipe)``, so the compiled graph already contains the slot's LoRA layers and later swaps only
copy weights (no recompilation). On a CPU every switch that only helps GPUs is skipped, so the same call is safe for
the tiny test model (tests compile with the "eager" backend: tracing and guards without code generation).

Fused q/k/v projections (diffusers' ``fuse_qkv_projections``) are never used: the fused ``to_qkv`` layer is made from
the base weights, so LoRA layers on ``to_q``/``to_k``/``to_v`` (every user's, and the slot's) would silently stop
having any effect. Generation refuses a LoRA on a pipeline someone fused (``is_qkv_fused``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COMPILE_SCOPES",
    "check_compile_scope",
    "compile_unet_blocks",
    "is_qkv_fused",
    "optimize_for_inference",
    "use_channels_last",
    "use_fast_maths",
]

# What training shares with rendering: "unet", nothing (a training slot compiles its own whole forward), or "blocks",
# each repeated transformer block (diffusers' regional compilation), compiled once for both. Rendering always runs
# the whole UNet as one graph (BENCHMARKS.md, 2026-12-01).
COMPILE_SCOPES = ("unet", "blocks")

# All of a UNet's transformer blocks run one ``forward`` code object, so dynamo keeps their graphs in one cache: one
# per input shape family, grad mode, train/eval flag and active LoRA adapter (6 on the tiny model's worker). Past
# torch's default limit of 8 it would silently run the blocks eagerly.
BLOCK_RECOMPILE_LIMIT = 64


def is_qkv_fused(pipe: Any) -> bool:
    """Whether ``fuse_qkv_projections`` is in effect on the UNet (a LoRA on q/k/v would then be ignored)."""
    processors = getattr(pipe.unet, "attn_processors", {})
    return any(type(processor).__name__.startswith("Fused") for processor in processors.values())


def optimize_for_inference(pipe: Any, *, compile_backend: str = "inductor", compile_scope: str = "unet") -> None:
    """Compile ``pipe`` for rendering, in place; call once at worker start-up, after creating any ``LoraSlot``.

    ``compile_scope`` is one of ``COMPILE_SCOPES``. The first render afterwards pays the compilation.

    Raises ``ValueError`` for an unknown ``compile_scope``, before anything changes.
    """
    import torch

    # 1. Check inputs.
    check_compile_scope(compile_scope)
    # Inference mode, as a checkpoint loads: compiled graphs guard on each module's ``training`` flag, and training
    # a LoRA ends with ``eval()``, so graphs compiled on a model built in training mode (random SDXL) recompiled
    # after a worker's first training job (BENCHMARKS.md, fourth session).
    pipe.unet.eval()
    pipe.vae.eval()

    # 2. Process-wide maths switches: TF32 matmuls and convolutions for whatever still runs in float32 (the VAE's
    #    upcast decode, LoRA layers in training). Half-precision work is unaffected.
    use_fast_maths(pipe)

    # 3. Structure: channels-last convolutions (faster cuDNN kernels).
    use_channels_last(pipe)

    # 4. Compile the UNet in place (``Module.compile`` keeps ``pipe.unet`` the same object, so LoRA loading, the
    #    slot and training still find it) and the VAE decoder, in torch's default mode: the autotuning modes compile
    #    for many minutes more, and CUDA graphs ('reduce-overhead') re-record for every batch size.
    #    Scope "blocks" compiles the transformer blocks for training, which calls ``unet.forward`` and so runs them
    #    one by one. Rendering calls the module, so it runs one whole-UNet graph in either scope (the blocks inlined):
    #    blocks alone left the ResNets, norms and glue eager, slower per request (BENCHMARKS.md, 2026-12-01).
    #    fullgraph: a graph break would silently split the request's graph. dynamic=False: a worker renders few batch
    #    sizes, each gets a static graph; dynamo's automatic dynamic shapes would give the second size warmed (the
    #    request's batch of 4) a slower graph with symbolic sizes.
    if compile_scope == "blocks":
        compile_unet_blocks(pipe.unet, backend=compile_backend)
    pipe.unet.compile(fullgraph=True, dynamic=False, backend=compile_backend)
    if not getattr(pipe.vae.decode, "_torchdynamo_orig_callable", None):
        pipe.vae.decode = torch.compile(pipe.vae.decode, dynamic=False, backend=compile_backend)


def check_compile_scope(compile_scope: str) -> None:
    """Raise ``ValueError`` naming ``compile_scope`` unless it is one of ``COMPILE_SCOPES``."""
    if compile_scope not in COMPILE_SCOPES:
        raise ValueError(f"compile_scope must be one of {COMPILE_SCOPES}, but is {compile_scope!r}.")


def use_fast_maths(pipe: Any) -> None:
    """On a GPU: TF32 for float32 matmuls and convolutions, cuDNN's autotuner; nothing on a CPU. Process-wide.

    Call it before compiling anything, training included: compiled graphs guard on these switches, and a worker's
    training graphs compiled before serving's set-up turned TF32 on were all recompiled at its first user's
    training (BENCHMARKS.md, fifth session).
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


def compile_unet_blocks(unet: Any, *, backend: str = "inductor") -> int:
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
            module.compile(fullgraph=True, backend=backend)
            compiled += 1
    return compiled
