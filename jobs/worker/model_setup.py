"""What a worker process keeps for its life, set up once at start: the model, its slots, compiled graphs, class images.

``prepare_model`` returns it as a ``ServingModel``; every job renders and trains through it, tests included (they
share one prepared tiny model between workers instead of loading one per worker).

Order matters: the rendering ``LoraSlot`` first (it needs a pipeline without adapters), FP8 layers if used, then the
``TrainingSlot`` (it hands activity back to the rendering slot between jobs), then compilation, so every graph
already contains both slots and no user's job adds a layer. Blocking: the worker runs ``prepare_model`` in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from jobs.settings import CompileProfile, Settings
from jobs.worker.decoder_process import DecoderProcess, compiles_decoder_apart, kept_note
from jobs.worker.ranking import render_batch_sizes
from jobs.worker.training_setup import compile_training, training_pipeline, training_plan

__all__ = [
    "ServingModel",
    "float8_scales_name",
    "fuses_resnet_blocks",
    "lays_out_channels_last",
    "model_key",
    "model_features",
    "prepare_model",
    "prepare_training",
    "renders_from_graphs",
    "renders_fused_geglu",
    "renders_in_float8",
    "renders_subpixel_upsamplers",
    "serving_renders",
    "start_decoder_process",
    "trains_subpixel_upsamplers",
    "use_channels_last_exits",
    "use_float8_rendering",
    "use_fused_resnet_blocks",
    "use_group_norm_operators",
    "use_subpixel_samplers",
]

log = logging.getLogger(__name__)

# The smallest GPU a worker replays its renders from CUDA graphs on unless told: their pool (~4 GiB for a worker's
# UNet call shapes) fits beside training's graphs on an H100 80GB, where it was measured (BENCHMARKS.md 2026-12-05
# sixteenth session); smaller cards train with checkpointing, close to their memory, and are not measured with it.
RENDER_GRAPHS_MIN_GIB = 72.0


@dataclass
class ServingModel:
    """The loaded pipeline and what a worker set up around it (types from ``pipeline.diffusion``, loaded lazily)."""

    pipe: Any
    train_plan: Any  # MemoryPlan: batch size and checkpointing for this GPU
    lora_slot: Any  # LoraSlot: every render copies the user's LoRA into it and merges it
    training_slot: Any | None = None  # TrainingSlot, when training is compiled
    class_images: list[Image.Image] | None = None  # prior-preservation images, when the settings ask for them
    class_prompt: str | None = None  # the prompt ``class_images`` were rendered from
    # Other classes' images ("a photo of a woman"), rendered on the first training that needs them: three kinds at
    # most (pipeline.subject.KINDS), so the worker's start stays as short as with one class.
    other_class_images: dict[str, list[Image.Image]] = field(default_factory=dict)
    # The pipeline LoRAs train on when HEADSHOT_TRAIN_MODEL names another checkpoint (klein's base beside the
    # distilled model that renders): its own denoiser, the text encoder and VAE of ``pipe``. None: ``pipe``.
    train_pipe: Any | None = None

    @property
    def training_pipe(self) -> Any:
        return self.pipe if self.train_pipe is None else self.train_pipe

    def class_images_for(self, prompt: str) -> list[Image.Image] | None:
        """Prior-preservation images of ``prompt``'s class (None when prior preservation is off). Renders on the
        calling thread the first time a class is asked for: call it where training runs, not on the event loop."""
        if self.class_images is None or prompt == self.class_prompt:
            return self.class_images
        if prompt not in self.other_class_images:
            from pipeline.diffusion.training.dataset import render_class_images

            self.other_class_images[prompt] = render_class_images(self.pipe, prompt, len(self.class_images))
        return self.other_class_images[prompt]


def model_features(model: ServingModel) -> tuple[str, ...]:
    """What the model offers beyond LoRA training and rendering (``WorkerFeature``), for the worker's heartbeat."""
    from jobs.ops.health import WorkerFeature
    from pipeline.diffusion.references import supports_references

    return (WorkerFeature.REFERENCES,) if supports_references(model.pipe) else ()


def prepare_model(settings: Settings) -> ServingModel:
    """Load ``settings.model`` and set up its plan, its rendering slot and, as the settings ask
    (``Settings.compile_profile`` for the model's device), compiled training, compiled rendering and class images."""
    from pipeline.diffusion.families import Family, pipeline_family
    from pipeline.diffusion.loading import gpu_memory_gib, load_base_pipeline, pick_device, weight_dtypes
    from pipeline.diffusion.lora_slot import LoraSlot

    started = time.monotonic()
    device = settings.device or pick_device()
    compiling = settings.compile_profile(device)  # before the load: settings that do not fit fail at once
    log.info("compiling: rendering %s, training %s, scope %s", compiling.unet, compiling.training, compiling.scope)
    pipe = load_base_pipeline(
        settings.model, device=device, dtype=settings.dtype, cache_dir=settings.resolved_model_cache_dir
    )
    family = pipeline_family(pipe)
    log.info("model %s (%s) loaded in %.1f s", settings.model, family, time.monotonic() - started)
    if family is Family.FLUX2:
        compiling = _flux2_profile(settings, compiling)
    compiling = replace(compiling, cuda_graphs=renders_from_graphs(compiling, family, gpu_memory_gib(device)))
    compiling = replace(compiling, channels_last=lays_out_channels_last(compiling))
    compiling = fuses_resnet_blocks(compiling, device)
    if compiling.cuda_graphs:
        log.info(
            "rendering replayed from CUDA graphs, the glue between the UNet's blocks %s",
            "compiled" if compiling.render_glue else "eager",
        )
    train_pipe = None
    if settings.train_model and settings.train_model != settings.model:
        if compiling.training:
            raise ValueError(
                "HEADSHOT_TRAIN_MODEL trains on a denoiser of its own, which compiled training (a TrainingSlot in the "
                "rendering denoiser) cannot reach; set HEADSHOT_COMPILE_TRAINING=false or unset HEADSHOT_TRAIN_MODEL."
            )
        train_pipe = training_pipeline(pipe, settings.train_model, settings, device)
    model = ServingModel(pipe, training_plan(train_pipe or pipe, settings), None, train_pipe=train_pipe)
    # One LoRA slot per worker: a user's LoRA is copied into it per request instead of attached as new layers, and
    # folded into the base weights for the request, so rendering runs no LoRA kernels (BENCHMARKS.md, second and
    # third sessions).
    model.lora_slot = LoraSlot(pipe, max_rank=settings.lora_rank)
    # Before FP8's calibration and training's compile, which it runs beside: the decoder needs neither. Stopped if
    # the start fails before it is waited for.
    decoder = start_decoder_process(pipe, settings, compiling, device)
    with decoder or contextlib.nullcontext():
        if renders_in_float8(settings, compiling, family, device):
            # Before any compile, so every graph is traced with the FP8 layers (training runs their bf16 branch
            # unless HEADSHOT_TRAIN_FLOAT8).
            use_float8_rendering(
                pipe, settings, model.lora_slot, fused_geglu=renders_fused_geglu(settings, compiling, device)
            )
        else:
            for name, value in (
                ("HEADSHOT_RENDER_FLOAT8_CONVS", settings.render_float8_convs),
                ("HEADSHOT_RENDER_FUSED_GEGLU", settings.render_fused_geglu),
            ):
                if value:
                    raise ValueError(
                        f"{name}=true needs FP8 rendering in effect, but HEADSHOT_RENDER_FLOAT8 left unset is off for "
                        f"this worker (a {device} {family.value} worker); set it true, or unset {name}."
                    )
        if device.startswith("cuda"):
            use_group_norm_operators(pipe, render_graphs=bool(compiling.cuda_graphs))
        if compiling.render_fused_resnets or compiling.train_fused_resnets:
            use_fused_resnet_blocks(pipe, train_pipe, compiling)
        use_subpixel_samplers(pipe, train_pipe, settings, compiling, device)
        if _channels_last_by_blocks(compiling, device):
            use_channels_last_exits(pipe)
        loaded = weight_dtypes(pipe)
        prepare_training(model, settings, compiling)
        if compiling.unet:
            seconds = _compile_for_serving(pipe, model.lora_slot, settings, compiling, decoder)
            log.info("denoiser and VAE decoder compiled for every style and batch size in %.0f s", seconds)
    if settings.prior_class_images:
        from pipeline.diffusion.training.config import TrainingConfig
        from pipeline.diffusion.training.dataset import render_class_images

        model.class_prompt = TrainingConfig().class_prompt
        model.class_images = render_class_images(pipe, model.class_prompt, settings.prior_class_images)
    _check_weight_dtypes(loaded, weight_dtypes(pipe))
    log.info("ready to serve in %.1f s%s", time.monotonic() - started, _gpu_memory(device))
    return model


def use_group_norm_operators(pipe: Any, *, render_graphs: bool) -> None:
    """A GPU worker's group norms through ``headshot::group_norm`` with gradients off too, where that pays: the VAE's
    (a training job's selfies and an action's source image through the encoder, every decode through the decoder:
    norms over megapixels, whose kernels dwarf the launches; on the channels-last decoder torch's norm copied each
    input to NCHW and back, and inductor fuses each compiled region's other work around the operator), and with
    ``render_graphs`` the UNet's (replayed, the launches cost nothing). Before any compile: graphs trace a norm's
    class. Training runs the UNet's through it anyway (``TrainingSlot``)."""
    from pipeline.diffusion.group_norm import use_group_norm_operator

    vae = [getattr(pipe.vae, part, None) for part in ("encoder", "decoder")]
    encoded, decoded = (0 if part is None else use_group_norm_operator(part, no_grad=True) for part in vae)
    rendered = use_group_norm_operator(pipe.unet, no_grad=True) if render_graphs else 0
    log.info(
        "group norms through headshot::group_norm without gradients: %d of the VAE encoder's, %d of its decoder's, "
        "%d of the UNet's",
        encoded,
        decoded,
        rendered,
    )


def use_channels_last_exits(pipe: Any) -> None:
    """A channels-last UNet compiled by blocks: each transformer's exit adds its tokens to the residual as a view in
    that layout, rendering and training, instead of diffusers' copy into NCHW and an add of two layouts (torch's
    strided path): ``pipeline.diffusion.transformer_glue``. Before any compile of the glue."""
    from pipeline.diffusion.glue_calls import RENDER, TRAIN
    from pipeline.diffusion.transformer_glue import use_fused_transformers

    fused = [use_fused_transformers(pipe.unet, calls=calls) for calls in (RENDER, TRAIN)]
    log.info("the UNet channels-last: %d transformers leave their tokens in that layout", max(fused))


def lays_out_channels_last(compiling: CompileProfile) -> bool:
    """Whether a worker with ``compiling`` (its graphs resolved, ``renders_from_graphs``) lays its UNet out
    channels-last on a GPU: ``HEADSHOT_UNET_CHANNELS_LAST`` when set; unset, with the scopes "unet" and "regions"
    (``acceleration.scope_layout``), and with "blocks" where every UNet call's group norms take
    ``headshot::group_norm``'s NHWC kernels: rendering replayed from CUDA graphs (``use_group_norm_operators``) and
    training compiled (its ``TrainingSlot``). There a replayed FP8 render call on an H100 took 0.1124 s against
    0.1193 s in NCHW, and a training call 0.3337 s against 0.3378 s, with the exits of ``use_channels_last_exits``
    (BENCHMARKS.md 2026-12-05 eighteenth session)."""
    from pipeline.diffusion.acceleration import scope_layout

    if compiling.channels_last is not None:
        return compiling.channels_last
    if compiling.scope == "blocks":
        return bool(compiling.cuda_graphs) and compiling.training
    return scope_layout(compiling.scope)


def _channels_last_by_blocks(compiling: CompileProfile, device: str) -> bool:
    """Whether a worker on ``device`` lays its UNet out channels-last (resolved) and compiles it by blocks: where it
    installs the transformers' channels-last exits, and where the fused ResNet blocks were timed."""
    return device.startswith("cuda") and compiling.scope == "blocks" and bool(compiling.channels_last)


def fuses_resnet_blocks(compiling: CompileProfile, device: str) -> CompileProfile:
    """``compiling`` with ``HEADSHOT_RENDER_FUSED_RESNETS`` and ``HEADSHOT_TRAIN_FUSED_RESNETS`` resolved (its layout
    resolved first, ``lays_out_channels_last``): each as set; unset, on where a GPU worker lays its UNet out
    channels-last by blocks, where both were timed: a replayed FP8 render call took 0.1075 s against 0.1120 s, and
    a training call 0.3189 s against 0.3330 s, on an H100 (BENCHMARKS.md 2026-12-06 twentieth session). With
    ``HEADSHOT_COMPILE_RENDER_GLUE`` rendering keeps the blocks unfused unless asked: that glue compiles them, as it
    was timed."""
    render, train = _glue_defaults(compiling, device)
    return replace(
        compiling,
        render_fused_resnets=render if compiling.render_fused_resnets is None else compiling.render_fused_resnets,
        train_fused_resnets=train if compiling.train_fused_resnets is None else compiling.train_fused_resnets,
    )


def _glue_defaults(compiling: CompileProfile, device: str) -> tuple[bool, bool]:
    """Where a glue setting left unset (the fused ResNet blocks, the sub-pixel samplers) is on, for rendering and for
    training: a GPU worker channels-last by blocks, where each was timed; rendering only where its glue stays eager
    (``HEADSHOT_COMPILE_RENDER_GLUE`` compiles those modules, as it was timed), training only where it compiles."""
    measured = _channels_last_by_blocks(compiling, device)
    return measured and not compiling.render_glue, measured and compiling.training


def renders_fused_geglu(settings: Settings, compiling: CompileProfile, device: str) -> bool:
    """``HEADSHOT_RENDER_FUSED_GEGLU`` as set; unset, on where FP8 rendering runs on a GPU worker channels-last by
    blocks, where it was timed: a request's GPU time 3.385 s against 3.445 s through the worker on an H100, the render
    call's difference from bf16 unchanged (BENCHMARKS.md 2026-12-06 twenty-second session). Only FP8 rendering asks."""
    if settings.render_fused_geglu is not None:
        return settings.render_fused_geglu
    return _channels_last_by_blocks(compiling, device)


def renders_subpixel_upsamplers(settings: Settings, compiling: CompileProfile, device: str) -> bool:
    """``HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS`` as set; unset, on where the fused ResNet blocks' default is (a GPU
    worker channels-last by blocks, its render glue eager), where it was timed: a replayed FP8 render call took
    0.1054 s against 0.1074 s on an H100, the same output within float rounding (BENCHMARKS.md 2026-12-06
    twenty-first session)."""
    if settings.render_subpixel_upsamplers is not None:
        return settings.render_subpixel_upsamplers
    return _glue_defaults(compiling, device)[0]


def trains_subpixel_upsamplers(settings: Settings, compiling: CompileProfile, device: str) -> bool:
    """``HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS`` as set; unset, on where a GPU worker channels-last by blocks compiles
    training, where it was timed: a replayed training call took 0.3358 s against 0.3391 s on an H100 (BENCHMARKS.md
    2026-12-06 twenty-first session)."""
    if settings.train_subpixel_upsamplers is not None:
        return settings.train_subpixel_upsamplers
    return _glue_defaults(compiling, device)[1]


def use_subpixel_samplers(
    pipe: Any, train_pipe: Any, settings: Settings, compiling: CompileProfile, device: str
) -> None:
    """The up-block samplers as sub-pixel convolutions (``pipeline.diffusion.upsample_glue``) in rendering and in
    training, as ``renders_subpixel_upsamplers`` and ``trains_subpixel_upsamplers`` decide; before any compile.
    Training's are ``train_pipe``'s, where it trains a UNet of its own."""
    from pipeline.diffusion.glue_calls import RENDER, TRAIN
    from pipeline.diffusion.upsample_glue import use_subpixel_upsamplers

    for asked, calls, target in (
        (renders_subpixel_upsamplers(settings, compiling, device), RENDER, pipe),
        (trains_subpixel_upsamplers(settings, compiling, device), TRAIN, train_pipe or pipe),
    ):
        if asked:
            changed = use_subpixel_upsamplers(target.unet, calls=calls)
            log.info("%d of the UNet's samplers %s as sub-pixel convolutions", changed, calls)


def use_fused_resnet_blocks(pipe: Any, train_pipe: Any, compiling: CompileProfile) -> None:
    """``HEADSHOT_RENDER_FUSED_RESNETS`` and ``HEADSHOT_TRAIN_FUSED_RESNETS`` (resolved, ``fuses_resnet_blocks``): the
    UNet's ResNet blocks render, and train, with each norm, its SiLU and the time embedding's add in one operator
    (``pipeline.diffusion.resnet_glue``); before any compile of the glue. Training's are ``train_pipe``'s, where it
    trains a UNet of its own."""
    from pipeline.diffusion.resnet_glue import RENDER, TRAIN, use_fused_resnets

    for asked, calls, unet in (
        (compiling.render_fused_resnets, RENDER, pipe.unet),
        (compiling.train_fused_resnets, TRAIN, (train_pipe or pipe).unet),
    ):
        if asked:
            fused = use_fused_resnets(unet, calls=calls)
            log.info(
                "%d of the UNet's ResNet blocks %s with their norms, SiLUs and time embedding in one operator",
                fused,
                calls,
            )


def _gpu_memory(device: str) -> str:
    """What the start left reserved of ``device``, and its peak (training graphs' pools stay reserved, and rendering
    must fit beside them); empty off CUDA."""
    import torch

    from pipeline.diffusion.loading import gpu_memory_gib

    total = gpu_memory_gib(device)
    if total is None:
        return ""
    reserved = torch.cuda.memory_reserved(device) / 2**30
    peak = torch.cuda.max_memory_reserved(device) / 2**30
    return f" ({reserved:.1f} of the GPU's {total:.1f} GiB reserved, {peak:.1f} GiB at most while starting)"


def use_float8_rendering(pipe: Any, settings: Settings, slot: Any = None, *, fused_geglu: bool = False) -> int:
    """The UNet's transformer linears as static FP8 layers, their input scales kept from an earlier start or
    calibrated now on every style's render (through ``slot`` merged, as a request renders) and kept; returns how many
    layers. ``fused_geglu``: the feed-forwards' entries through ``headshot::geglu_float8`` (``renders_fused_geglu``)."""
    from pipeline.diffusion.float8 import use_float8_linears
    from pipeline.diffusion.float8_shared_input import share_input_scales
    from pipeline.diffusion.serving import calibrated_float8
    from pipeline.styles import STYLES

    calibrating = time.monotonic()
    layers = use_float8_linears(pipe.unet, scaling="static")
    # One FP8 copy of the tensor an attention's q, k and v read, where there were three (the blocks' compile merges
    # the casts): a replayed render call 1.4% faster on an H100 (BENCHMARKS.md 2026-12-05 eighteenth session).
    shared = share_input_scales(pipe.unet)
    log.info("%d UNet linear layers render in FP8, %d groups of them from one input", layers, shared)
    if settings.render_float8_convs:
        from pipeline.diffusion.float8_conv import use_float8_convs

        # Calibrated with the linears, below; the kept scales name them, so a file without them calibrates afresh.
        log.info("%d ResNet convolutions render in FP8", use_float8_convs(pipe.unet))
    if fused_geglu:
        from pipeline.diffusion.geglu_float8 import use_fused_feed_forwards

        # Runs diffusers' forward while calibrating (below), so the second layers' scales are calibrated as before.
        fused = use_fused_feed_forwards(pipe.unet)
        log.info("%d feed-forwards render their entry through headshot::geglu_float8", fused)
    # Beside the compiled kernels: kept on the same volume, for the same reason (a restart skips the work).
    scales_file = settings.resolved_compile_cache_dir / float8_scales_name(settings)
    reused = calibrated_float8(pipe, STYLES.values(), scales_file, slot)
    log.info(
        "FP8 input scales %s in %.1f s",
        f"reused from {scales_file}" if reused else f"calibrated (kept in {scales_file})",
        time.monotonic() - calibrating,
    )
    return layers


def model_key(settings: Settings) -> str:
    """A file-name-safe key for the model a worker serves and its dtype (its weights are checked apart)."""
    import hashlib

    return hashlib.sha256(f"{settings.model}|{settings.dtype}".encode()).hexdigest()[:16]


def float8_scales_name(settings: Settings) -> str:
    """The file FP8 rendering keeps its calibrated scales in, in the compile cache folder: one per model and dtype
    (the file itself checks the weights it was calibrated for)."""
    return f"float8-scales-{model_key(settings)}.json"


def renders_in_float8(settings: Settings, compiling: CompileProfile, family: Any, device: str) -> bool:
    """``HEADSHOT_RENDER_FLOAT8`` when set; unset, whether this worker gains from FP8: a compiled SDXL UNet on a GPU
    with FP8 tensor cores (uncompiled, the input casts run as kernels of their own and cost more than they save)."""
    if settings.render_float8 is not None:
        return settings.render_float8
    from pipeline.diffusion.families import Family

    if not compiling.unet or family is not Family.SDXL:
        return False
    import torch

    from pipeline.diffusion.float8 import fp8_tensor_cores

    return fp8_tensor_cores(torch.device(device))


def renders_from_graphs(compiling: CompileProfile, family: Any, gpu_gib: float | None) -> bool:
    """Whether a worker with ``compiling`` (``Settings.compile_profile``) on a GPU of ``gpu_gib`` (None: not a GPU)
    replays its renders from CUDA graphs: ``HEADSHOT_RENDER_CUDA_GRAPHS`` when set; unset, for a compiled SDXL UNet on
    a GPU of ``RENDER_GRAPHS_MIN_GIB`` or more. Replayed, a render call's glue between the compiled blocks costs no
    launches from Python and the UNet's norms take the operator's kernels: an FP8 call 4.7% faster on an H100 80GB,
    where launched from Python the operator was slower (BENCHMARKS.md).

    Raises ``ValueError`` when ``HEADSHOT_COMPILE_RENDER_GLUE`` asks for glue that would not be replayed."""
    graphs = compiling.cuda_graphs
    if graphs is None:
        from pipeline.diffusion.families import Family

        graphs = compiling.unet and family is Family.SDXL and (gpu_gib or 0.0) >= RENDER_GRAPHS_MIN_GIB
    if compiling.render_glue and not graphs:
        where = "off a GPU" if gpu_gib is None else f"on a GPU of {gpu_gib:.0f} GiB"
        raise ValueError(
            f"HEADSHOT_COMPILE_RENDER_GLUE=true needs rendering replayed from CUDA graphs, which this worker {where} "
            f"does not do (HEADSHOT_RENDER_CUDA_GRAPHS unset: on for a compiled SDXL UNet on a GPU of "
            f"{RENDER_GRAPHS_MIN_GIB:.0f} GiB or more). Set HEADSHOT_RENDER_CUDA_GRAPHS=true, or unset "
            "HEADSHOT_COMPILE_RENDER_GLUE."
        )
    return graphs


def _check_weight_dtypes(loaded: dict[str, set[Any]], now: dict[str, set[Any]]) -> None:
    """Raise ``RuntimeError`` naming every component whose weights the start-up cast: a shared component cast to
    float32 (diffusers' ``from_pipe`` once did it to every SDXL worker) renders every job ~3x slower, silently."""
    changed = [
        f"{name} from {sorted(map(str, loaded[name]))} to {sorted(map(str, dtypes))}"
        for name, dtypes in now.items()
        if dtypes != loaded.get(name, dtypes)
    ]
    if changed:
        raise RuntimeError(
            f"The worker's start-up cast {'; '.join(changed)}. Every job would run in the new dtype, slower and "
            "recompiling; this is a bug in the worker's set-up (or in a library it calls), so report it with this "
            "message instead of serving."
        )


def _flux2_profile(settings: Settings, profile: CompileProfile) -> CompileProfile:
    """What a klein worker compiles: rendering only, the whole transformer. Compiled training (a ``TrainingSlot``),
    block-wise compiling and FP8 are built and measured for SDXL's UNet only; settings that ask for them by name fail
    at start instead of being ignored, and left unset they are off."""
    asked = [
        name
        for name, value in (
            ("HEADSHOT_COMPILE_TRAINING=true", settings.compile_training),
            (f"HEADSHOT_COMPILE_SCOPE={settings.compile_scope}", settings.compile_scope not in (None, "unet")),
            ("HEADSHOT_RENDER_FLOAT8=true", settings.render_float8),
            ("HEADSHOT_TRAIN_FLOAT8=true", settings.train_float8),
            ("HEADSHOT_RENDER_CUDA_GRAPHS=true", settings.render_cuda_graphs),
            ("HEADSHOT_COMPILE_RENDER_GLUE=true", settings.compile_render_glue),
            ("HEADSHOT_RENDER_FUSED_RESNETS=true", settings.render_fused_resnets),
            ("HEADSHOT_TRAIN_FUSED_RESNETS=true", settings.train_fused_resnets),
            ("HEADSHOT_RENDER_FLOAT8_CONVS=true", settings.render_float8_convs),
            ("HEADSHOT_RENDER_FUSED_GEGLU=true", settings.render_fused_geglu),
            ("HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS=true", settings.render_subpixel_upsamplers),
            ("HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS=true", settings.train_subpixel_upsamplers),
        )
        if value
    ]
    if asked:
        raise ValueError(
            f"{', '.join(asked)} is not built for FLUX.2 [klein] yet; unset it for this model (a klein worker "
            "compiles rendering only, with HEADSHOT_COMPILE_UNET)."
        )
    if profile.training:
        log.info("FLUX.2 [klein] trains eagerly: compiled training is built for SDXL only")
    # Scope "unet" compiles the whole denoiser, which eager training bypasses (it calls ``forward``), so a user's
    # training adds its adapter without recompiling what rendering uses.
    return CompileProfile(unet=profile.unet, training=False, scope="unet")


def prepare_training(model: ServingModel, settings: Settings, compiling: CompileProfile) -> None:
    """What a worker's start does before training or rendering is compiled: inductor's kernel cache, the maths
    switches and channels-last weights; then, when ``compiling.training``, the compiled ``TrainingSlot``
    (``model.training_slot``). Nothing when nothing compiles."""
    if not (compiling.training or compiling.unet):
        return
    from pipeline.diffusion.acceleration import use_channels_last, use_compile_cache, use_fast_maths

    log.info("compiled kernels cached in %s", use_compile_cache(settings.resolved_compile_cache_dir))
    # Before the training compile: graphs guard on the TF32 switches and on weight strides, so had serving's
    # set-up changed them after it, the first user's training would recompile (it did, BENCHMARKS.md).
    use_fast_maths(model.pipe)
    use_channels_last(model.pipe, lays_out_channels_last(compiling))
    if compiling.training:
        model.training_slot, seconds = compile_training(model.pipe, model.train_plan, settings, compiling.scope)
        graphs = model.training_slot.graphs
        captured = f", {graphs.captured} batch shapes captured as CUDA graphs" if graphs is not None else ""
        log.info("training step compiled in %.0f s%s", seconds, captured)


def serving_renders(settings: Settings) -> tuple[list[Any], list[int], list[int]]:
    """What a compiled worker's start renders: every look at every shape it serves without compiling (/headshot's
    aspect choice), its batch sizes, and the previews' batch sizes."""
    from pipeline.diffusion.generation import DEFAULT_BATCH_SIZE
    from pipeline.styles import STYLES, custom_style

    batches = render_batch_sizes(settings.headshots_per_request, settings.headshot_candidates, DEFAULT_BATCH_SIZE)
    looks = [*STYLES.values(), custom_style("a free-text style")]
    styles = [replace(style, aspect=aspect) for style in looks for aspect in settings.warm_aspect_ratios]
    previews = (
        render_batch_sizes(settings.preview_count, settings.headshot_candidates, DEFAULT_BATCH_SIZE)
        if settings.preview_count
        else []
    )
    return styles, list(batches), list(previews)


def start_decoder_process(
    pipe: Any, settings: Settings, compiling: CompileProfile, device: str
) -> DecoderProcess | None:
    """The VAE decoder's compile in a process of its own (``jobs.worker.decoder_process``), when this start compiles
    it with inductor (whose caches carry the graphs over) and ``HEADSHOT_COMPILE_DECODER_APART`` is on for
    ``device`` (``compiles_decoder_apart``); else None."""
    if not (compiling.unet and settings.compile_backend == "inductor"):
        return None
    if not compiles_decoder_apart(settings.compile_decoder_apart, device):
        return None
    from pipeline.diffusion.acceleration import use_compile_cache
    from pipeline.diffusion.serving import serving_decode_shapes

    styles, batches, previews = serving_renders(settings)
    # As compile_for_serving warms them: the same shapes in the same order make the same graphs.
    shapes = serving_decode_shapes(pipe, styles, batches, previews)
    if not shapes:  # batches of one only: every decode is eager
        return None
    kernels = use_compile_cache(settings.resolved_compile_cache_dir)
    dtype = str(pipe.vae.dtype).removeprefix("torch.")
    note = kept_note(
        kernels, model=settings.model, device=device, dtype=dtype, backend=settings.compile_backend, shapes=shapes
    )
    if note.exists():
        log.info("the VAE decoder's graphs are kept in %s from an earlier start: this start loads them itself", kernels)
        return None
    return DecoderProcess.start(
        model=settings.model,
        model_cache_dir=settings.resolved_model_cache_dir,
        compile_cache_dir=kernels,
        device=device,
        dtype=dtype,
        backend=settings.compile_backend,
        shapes=shapes,
        note=note,
    )


def _compile_for_serving(
    pipe: Any, slot: Any, settings: Settings, compiling: CompileProfile, decoder: DecoderProcess | None
) -> float:
    from pipeline.diffusion.serving import compile_for_serving

    styles, batches, previews = serving_renders(settings)
    return compile_for_serving(
        pipe,
        slot,
        styles=styles,
        batch_sizes=batches,
        compile_backend=settings.compile_backend,
        compile_scope=compiling.scope,
        cuda_graphs=bool(compiling.cuda_graphs),
        render_glue=compiling.render_glue,
        channels_last=lays_out_channels_last(compiling),
        preview_batch_sizes=previews,
        decoder_compiled=None if decoder is None else decoder.wait,
    )
