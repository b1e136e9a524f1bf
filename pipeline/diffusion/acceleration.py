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

import functools
import os
from pathlib import Path
from typing import Any

__all__ = [
    "COMPILE_SCOPES",
    "check_compile_scope",
    "compile_decoder_regions",
    "compile_unet_blocks",
    "compile_unet_regions",
    "compile_regionally",
    "decoder_layout",
    "gpu_layout",
    "is_qkv_fused",
    "optimize_for_inference",
    "scope_layout",
    "use_channels_last",
    "use_compile_cache",
    "use_fast_maths",
    "use_fast_maths_on",
]

# What "compiling the UNet" compiles: "unet", the whole module; "blocks", each repeated transformer block
# (diffusers' regional compilation); "regions", the blocks and the eager glue between them. Blocks compile many times
# faster than the whole UNet and run a call slower; regions run it as fast as the whole UNet and compile once for
# every request shape (BENCHMARKS.md, fifth session and 2026-12-02 second session).
COMPILE_SCOPES = ("unet", "blocks", "regions")
REGIONAL_SCOPES = ("blocks", "regions")

# All of a UNet's transformer blocks run one ``forward`` code object, so dynamo keeps their graphs in one cache: one
# per input shape family, grad mode, train/eval flag and active LoRA adapter (6 on the tiny model's worker). Past
# torch's default limit of 8 it would silently run the blocks eagerly.
BLOCK_RECOMPILE_LIMIT = 64

# Besides the transformer blocks, "regions" compiles the UNet's eager glue: every ResNet block, down- and upsampler
# (classes of diffusers' ``unets``, which the VAE decoder's regions are too: ``compile_decoder_regions``), and each
# Transformer2DModel's entry (norm, flattening, proj_in) and exit (proj_out, back to an image, residual). Eager,
# that glue converts layouts around GroupNorm and the residual adds (a third of a blocks-compiled call's non-matmul
# time, BENCHMARKS.md 2026-12-01).
REGION_CLASSES = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TRANSFORMER_GLUE = ("_operate_on_continuous_inputs", "_get_output_for_continuous_inputs")
# One graph per region class, shape family and grad mode: SDXL has 12 ResNet shapes, so static shapes at ten warmed
# request shapes need far more than torch's default of 8 per code object (past it a region runs eagerly, silently).
REGION_RECOMPILE_LIMIT = 512

# cuDNN's autotuner (``cudnn.benchmark``) times every convolution algorithm at each new input shape, once per process:
# nothing is kept on disk, so every start pays it again for every shape it warms (2.4-3.4 s a training shape on an
# H200), and on SDXL it bought neither the training call nor the FP8 render call anything (BENCHMARKS.md, 2026-12-03
# sixth session). Off; ``--cudnn-autotune on`` in the benchmarks times it.
CUDNN_AUTOTUNE = False


def is_qkv_fused(pipe: Any) -> bool:
    """Whether ``fuse_qkv_projections`` is in effect on the denoiser (a LoRA on q/k/v would then be ignored)."""
    from pipeline.diffusion.families import denoiser

    processors = getattr(denoiser(pipe), "attn_processors", {})
    return any(type(processor).__name__.startswith("Fused") for processor in processors.values())


def optimize_for_inference(
    pipe: Any,
    *,
    compile_backend: str = "inductor",
    compile_scope: str = "unet",
    render_glue: bool = False,
    channels_last: bool | None = None,
) -> None:
    """Compile ``pipe`` for rendering, in place; call once at worker start-up, after creating any ``LoraSlot``.

    ``compile_scope`` is one of ``COMPILE_SCOPES``. The first render afterwards pays the compilation.
    ``render_glue`` (with "blocks"): the glue between the blocks compiles too, for rendering only
    (``compile_unet_regions(with_gradients=False)``): where render calls replay from CUDA graphs, so the glue's
    launches cost nothing, a call by regions was 6% faster than by blocks (BENCHMARKS.md 2026-12-05 ninth session),
    while training keeps the glue eager and compiles nothing more. ``channels_last``: the UNet's layout on a GPU
    (``use_channels_last``); None: ``scope_layout(compile_scope)``.

    Raises ``ValueError`` for an unknown ``compile_scope``, before anything changes.
    """
    # 1. Check inputs.
    check_compile_scope(compile_scope)
    from pipeline.diffusion.families import denoiser

    model = denoiser(pipe)  # SDXL's UNet or klein's transformer
    # Inference mode, as a checkpoint loads: compiled graphs guard on each module's ``training`` flag, and training
    # a LoRA ends with ``eval()``, so graphs compiled on a model built in training mode (random SDXL) recompiled
    # after a worker's first training job (BENCHMARKS.md, fourth session).
    model.eval()
    pipe.vae.eval()

    # 2. Process-wide maths switches: TF32 matmuls and convolutions for whatever still runs in float32 (the VAE's
    #    upcast decode, LoRA layers in training). Half-precision work is unaffected.
    use_fast_maths(pipe)

    # 3. Structure: channels-last convolutions (faster cuDNN kernels) where they are compiled.
    use_channels_last(pipe, scope_layout(compile_scope) if channels_last is None else channels_last)

    # 4. Compile the UNet in place (``Module.compile`` keeps ``pipe.unet`` the same object, so LoRA loading, the
    #    slot and training still find it) and the VAE decoder, in torch's default mode: the autotuning modes compile
    #    for many minutes more, and CUDA graphs ('reduce-overhead') re-record for every batch size.
    if compile_scope in REGIONAL_SCOPES:
        compile_regionally(model, compile_scope, backend=compile_backend)
        if render_glue and compile_scope == "blocks":
            compile_unet_regions(model, backend=compile_backend, with_gradients=False)
    else:
        model.compile(fullgraph=False, backend=compile_backend)
    compile_decoder_regions(pipe.vae, backend=compile_backend)


def compile_decoder_regions(vae: Any, *, backend: str = "inductor", single_images: bool = False) -> int:
    """Compile ``vae``'s decoder by regions, in place: each ResNet block and upsampler (``REGION_CLASSES``),
    every size dynamic, the rest eager (its mid-block attention, first and last convolutions); return how many
    regions are new.

    Batches decode compiled, from one small graph per block shape family, with the norms the operator's
    (``model_setup.use_group_norm_operators``), opaque to inductor, which fuses the rest of each block around them.
    Single images (an upscale, the face pass) run the same regions eagerly unless ``single_images``: dynamo
    specialises a batch of one, so compiling them doubled the graphs (16 for a worker's shapes), and a cold start
    waited for the decoder's process that compiled them. Eager, a single image's norms still take the operator's
    kernels (an upscale's decode 0.211 s against 0.196 s compiled, a face pass's 0.039 s against 0.035 s: BENCHMARKS.md
    2026-12-05 ninth and tenth sessions). By regions a request's batch of 4 decoded in 0.139 s against 0.147 s for
    one graph of the whole decoder (``python -m bench.benchmark_decoder``).
    """
    _allow_region_graphs()  # the blocks' classes are the UNet's: with "regions" their graphs share one cache a class
    compiled = 0
    for module in vae.decoder.modules():
        if type(module).__name__ in REGION_CLASSES and module._compiled_call_impl is None:
            module.compile(dynamic=True, backend=backend)
            if not single_images:
                module._compiled_call_impl = _batches_only(module._call_impl, module._compiled_call_impl)
            compiled += 1
    return compiled


def _batches_only(eager: Any, graph: Any) -> Any:
    """``graph`` (``eager`` compiled) for calls whose first tensor is a batch of two or more, ``eager`` for a single
    image's; ``_without_gradients``'s twin."""

    def call(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else next(iter(kwargs.values()))
        return eager(*args, **kwargs) if first.shape[0] == 1 else graph(*args, **kwargs)

    return call


def compile_unet_regions(
    unet: Any, *, backend: str = "inductor", dynamic: bool = True, with_gradients: bool = True
) -> int:
    """Compile ``unet``'s transformer blocks (``compile_unet_blocks``) and its eager glue (``REGION_CLASSES`` and
    each Transformer2DModel's ``TRANSFORMER_GLUE``) in place, each region once; return how many regions are new.

    ``dynamic``: the glue's graphs take any batch and image size (one graph per region class and channel count
    instead of one per request shape: a worker warming ten shapes compiles them once). ``with_gradients=False``:
    the glue runs compiled only in calls without gradients (rendering) and eagerly in the others (training), so a
    training compiled by blocks compiles nothing more.
    """
    import torch

    compiled = compile_unet_blocks(unet, backend=backend)
    _allow_region_graphs()

    def compile_glue(call: Any) -> Any:
        graph = torch.compile(call, fullgraph=True, dynamic=dynamic, backend=backend)
        return graph if with_gradients else _without_gradients(call, graph)

    for module in unet.modules():
        kind = type(module).__name__
        if kind in REGION_CLASSES and module._compiled_call_impl is None and "forward" not in vars(module):
            if with_gradients:
                module.compile(fullgraph=True, dynamic=dynamic, backend=backend)
            else:
                module.forward = compile_glue(module.forward)  # an instance attribute shadows the class's method
            compiled += 1
        elif kind == "Transformer2DModel" and getattr(module, "is_input_continuous", False):
            for name in TRANSFORMER_GLUE:
                if name not in vars(module):  # an instance attribute shadows the class's method for this module only
                    setattr(module, name, compile_glue(getattr(module, name)))
                    compiled += 1
    return compiled


def _without_gradients(eager: Any, graph: Any) -> Any:
    """``graph`` (``eager`` compiled) for calls with gradients off, ``eager`` for the others."""
    import torch

    @functools.wraps(eager)
    def call(*args: Any, **kwargs: Any) -> Any:
        return eager(*args, **kwargs) if torch.is_grad_enabled() else graph(*args, **kwargs)

    return call


def _allow_region_graphs() -> None:
    """Raise dynamo's recompile limits to ``REGION_RECOMPILE_LIMIT`` (process-wide; never lowers them)."""
    import torch._dynamo.config

    limit = max(torch._dynamo.config.recompile_limit, REGION_RECOMPILE_LIMIT)
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, limit)


def compile_regionally(unet: Any, compile_scope: str, *, backend: str = "inductor") -> int:
    """Compile ``unet`` in place for one of ``REGIONAL_SCOPES`` (training and rendering share what it compiles);
    return how many regions are new."""
    if compile_scope == "regions":
        return compile_unet_regions(unet, backend=backend)
    if compile_scope == "blocks":
        return compile_unet_blocks(unet, backend=backend)
    raise ValueError(f"compile_scope must be one of {REGIONAL_SCOPES} to compile regionally, but is {compile_scope!r}.")


def check_compile_scope(compile_scope: str) -> None:
    """Raise ``ValueError`` naming ``compile_scope`` unless it is one of ``COMPILE_SCOPES``."""
    if compile_scope not in COMPILE_SCOPES:
        raise ValueError(f"compile_scope must be one of {COMPILE_SCOPES}, but is {compile_scope!r}.")


def use_fast_maths(pipe: Any) -> None:
    """On a GPU: TF32 for float32 matmuls and convolutions, cuDNN's autotuner (``CUDNN_AUTOTUNE``); nothing on a CPU.
    Process-wide.

    Call it before compiling anything, training included: compiled graphs guard on these switches, and a worker's
    training graphs compiled before serving's set-up turned TF32 on were all recompiled at its first user's
    training (BENCHMARKS.md, fifth session).
    """
    from pipeline.diffusion.families import denoiser

    use_fast_maths_on(denoiser(pipe).device)


def use_fast_maths_on(device: Any) -> None:
    """``use_fast_maths`` for a process whose model is on ``device`` (one that holds no whole pipeline: the decoder's
    compile apart); ``device`` a ``torch.device``."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = CUDNN_AUTOTUNE


def use_compile_cache(folder: Path) -> Path:
    """Keep torch.compile's generated kernels in ``folder`` (created if needed) unless ``TORCHINDUCTOR_CACHE_DIR``
    already names a folder; return the folder in use. Process-wide.

    Inductor's default folder is under /tmp, which a container loses at every restart, and a cold SDXL graph takes
    minutes to compile (BENCHMARKS.md); from a kept folder a restarted worker loads its graphs. Triton's cache follows
    inductor's folder (``TRITON_CACHE_DIR``, unless named): inductor only points it there when it first loads a
    kernel of its own, and the project's Triton kernels (``headshot::group_norm`` in the VAE encoder's first training
    encode, before any graph) were compiled into ~/.triton/cache, which a new container does not have. Call it
    before the first compile.

    Importing ``torch._dynamo`` (diffusers and peft do, loading a model) writes inductor's default folder into
    ``TORCHINDUCTOR_CACHE_DIR`` itself, so that value counts as unset: taken as named, it kept every worker's
    kernels in /tmp whatever ``HEADSHOT_COMPILE_CACHE_DIR`` said.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    global _triton_folder_set
    named = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if named and Path(named) != Path(default_cache_dir()):
        in_use = Path(named)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        in_use = folder.resolve()
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(in_use)
    if os.environ.get("TRITON_CACHE_DIR") in (None, _triton_folder_set):
        # Where inductor points it for device 0 (``triton_cache_dir``), so its own kernels land where they did.
        _triton_folder_set = str(in_use / "triton" / "0")
        os.environ["TRITON_CACHE_DIR"] = _triton_folder_set
    return in_use


_triton_folder_set: str | None = None  # the TRITON_CACHE_DIR use_compile_cache set last (another call may move it)


def scope_layout(compile_scope: str) -> bool:
    """Whether the UNet is channels-last for ``compile_scope`` when nothing else decides: where its group norms are
    compiled ("unet", "regions"), not with "blocks".

    An eager group norm on CUDA copies a channels-last input to NCHW and back (forward and backward). With "blocks"
    the UNet's convolutions and group norms run eagerly, and with torch's norms NCHW is the faster layout for it
    (BENCHMARKS.md, 2026-12-03); compiled whole or by regions, inductor fuses the norms in either layout. A worker
    whose "blocks" norms all run through ``headshot::group_norm`` (its NHWC kernels) lays them out channels-last
    instead (``jobs.worker.model_setup.lays_out_channels_last``).
    """
    return compile_scope != "blocks"


def use_channels_last(pipe: Any, unet: bool = True) -> None:
    """On a GPU, ``gpu_layout``: the VAE's decoder, and the UNet if ``unet``, in channels-last layout (cuDNN's
    fastest convolutions); nothing on a CPU.

    Do it before compiling anything, training included: graphs guard on their weights' strides, so a layout change
    after a compile recompiles at the next call.
    """
    from pipeline.diffusion.families import denoiser

    if denoiser(pipe).device.type == "cuda":
        gpu_layout(pipe, unet)


def gpu_layout(pipe: Any, unet: bool = True) -> None:
    """A GPU worker's memory layouts, on any device (tests lay a CPU model out this way): the denoiser channels-last
    if ``unet`` (``scope_layout``), else NCHW; the VAE's decoder channels-last, its encoder NCHW.

    The VAE's decoder is compiled (``compile_decoder_regions``), its encoder eager: channels-last, torch's norms'
    copies were half of a training job's encoding (``python -m bench.benchmark_encoding``, BENCHMARKS.md 2026-12-04
    fourth session).
    """
    import torch

    from pipeline.diffusion.families import denoiser

    denoiser(pipe).to(memory_format=torch.channels_last if unet else torch.contiguous_format)
    decoder_layout(pipe.vae)


def decoder_layout(vae: Any) -> None:
    """``gpu_layout``'s part for ``vae``: its decoder (and the convolution before it) channels-last."""
    import torch

    for part in (vae.decoder, getattr(vae, "post_quant_conv", None)):
        if part is not None:
            part.to(memory_format=torch.channels_last)


def compile_unet_blocks(unet: Any, *, backend: str = "inductor", dynamic: bool | None = None) -> int:
    """Compile each of ``unet``'s repeated transformer blocks in place (those not compiled yet); return how many.

    Training and rendering share these compiled blocks: a block called with gradients on gets graphs of its own.
    A block whose FP8 layers share input scales (``float8_shared_input``) compiles with its merging pass.
    ``dynamic`` is torch.compile's: None (a worker's) compiles the first shape static and the next ones dynamic.
    """
    import torch._dynamo.config

    from pipeline.diffusion.float8_shared_input import compile_options

    repeated = set(getattr(unet, "_repeated_blocks", ()))
    if not repeated:
        raise ValueError(f"{type(unet).__name__} names no repeated blocks to compile; use compile_scope='unet' for it.")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, BLOCK_RECOMPILE_LIMIT)
    compiled = 0
    for module in unet.modules():
        if type(module).__name__ in repeated and module._compiled_call_impl is None:
            # fullgraph: a graph break inside a block would split every one of them, silently slower.
            # With FP8 layers sharing an input's scale, the pass that writes one FP8 copy of it for all of them.
            options = compile_options(module, backend)
            module.compile(fullgraph=True, backend=backend, dynamic=dynamic, options=options)
            compiled += 1
    return compiled
