"""Readying a worker's pipeline: compile it and render every look it will serve once, before the first user."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.diffusion.acceleration import optimize_for_inference
from pipeline.diffusion.decoder_compile import decode_shapes, warm_decoder
from pipeline.diffusion.generation import DEFAULT_BATCH_SIZE, denoise_looks, generate_headshots

if TYPE_CHECKING:
    from pipeline.diffusion.lora_slot import LoraSlot
    from pipeline.styles import Style

__all__ = [
    "CALIBRATION_STEPS",
    "calibrate_float8_on_looks",
    "calibrated_float8",
    "compile_for_serving",
    "serving_decode_shapes",
    "warm_batches",
    "warm_for_serving",
    "warm_looks",
]

# Enough steps to sample the whole noise schedule: the activations' range changes with the timestep.
CALIBRATION_STEPS = 10

log = logging.getLogger(__name__)


@contextmanager
def _warming(what: str) -> Iterator[None]:
    """Log how long one warm-up render took: a worker's start is minutes of these, and the log says which shape
    compiled (long) and which reused a graph (a second or less)."""
    started = time.perf_counter()
    yield
    log.info("warmed %s in %.1f s", what, time.perf_counter() - started)


@contextmanager
def _kernel_cache_use(what: str) -> Iterator[None]:
    """Log how many of the graphs inductor compiled inside the block came from its cache and how many it compiled:
    a start whose decoder was compiled beside it should find them all (``decoder_compile``)."""
    from torch._dynamo.utils import counters

    def counts() -> tuple[int, int]:
        return counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]

    hits, misses = counts()
    yield
    now_hits, now_misses = counts()
    log.info("%s: %d graphs from inductor's cache, %d compiled", what, now_hits - hits, now_misses - misses)


def compile_for_serving(
    pipe: Any,
    slot: LoraSlot,
    *,
    styles: Iterable[Style],
    batch_sizes: Iterable[int],
    compile_backend: str = "inductor",
    compile_scope: str = "unet",
    cuda_graphs: bool = False,
    render_glue: bool = False,
    channels_last: bool | None = None,
    preview_batch_sizes: Iterable[int] = (),
    decoder_compiled: Callable[[], object] | None = None,
) -> float:
    """Compile ``pipe`` for a worker and render every style look and batch size it will serve (``warm_for_serving``);
    return seconds.

    ``cuda_graphs`` (a CUDA SDXL pipeline) captures each UNet call shape of those renders as a CUDA graph, which every
    later call of the shape replays (``pipeline.diffusion.cuda_graphs``). ``render_glue`` with them and "blocks" also
    compiles the glue between the blocks for rendering (``optimize_for_inference``'s ``render_glue``): replayed, its
    launches cost nothing either way, and compiled it fuses the glue's work for a longer cold start.
    ``channels_last``: the UNet's layout on a GPU (None: by ``compile_scope``, ``acceleration.scope_layout``).
    """
    started = time.perf_counter()
    with _warming(f"compile set-up (scope {compile_scope})"):
        optimize_for_inference(
            pipe,
            compile_backend=compile_backend,
            compile_scope=compile_scope,
            render_glue=cuda_graphs and render_glue,
            channels_last=channels_last,
        )
    graphs = None
    if cuda_graphs:
        from pipeline.diffusion.cuda_graphs import DenoiserGraphs

        graphs = DenoiserGraphs(pipe.unet)  # after every change to the weights' tensors: compile, layout, slot
    warm_for_serving(
        pipe,
        slot,
        styles=styles,
        batch_sizes=batch_sizes,
        preview_batch_sizes=preview_batch_sizes,
        compile_backend=compile_backend,
        decoder_compiled=decoder_compiled,
    )
    if graphs is not None:
        log.info("%d UNet call shapes captured as CUDA graphs", graphs.captured)
    return time.perf_counter() - started


def warm_for_serving(
    pipe: Any,
    slot: LoraSlot,
    *,
    styles: Iterable[Style],
    batch_sizes: Iterable[int],
    preview_batch_sizes: Iterable[int] = (),
    compile_backend: str = "inductor",
    decoder_compiled: Callable[[], object] | None = None,
) -> None:
    """Render every style look and batch size a worker will serve once, so whatever of ``pipe`` is compiled builds
    the graphs those requests need now, at start-up, and no user's first request waits minutes for a compile.

    Renders go through ``generate_headshots`` with ``slot`` merged (holding zeros), the path and state every user's
    request renders in. Styles that share size, sampler and CFG share graphs and render once. The actions on a
    headshot (variations, remixes, upscales, the face pass) are warmed at their sizes too; on klein, whose references
    add tokens to every step, so are renders from selfies (``preview_batch_sizes`` for the previews queued with a
    training, ``batch_sizes`` for ``/headshot`` before one) and from a headshot.

    The VAE decoder is warmed first, on every shape the renders decode (``decoder_compile.warm_decoder``, compiling it
    with ``compile_backend`` unless it is compiled), once ``decoder_compiled`` returns: a worker waits there for the
    process that compiled the decoder's graphs beside its start, after its denoiser's first render (nothing decoded).
    """
    from pipeline.diffusion.img2img import supports_actions
    from pipeline.diffusion.references import supports_references

    actions, references = supports_actions(pipe), supports_references(pipe)
    styles, batch_sizes, preview_batch_sizes = list(styles), warm_batches(batch_sizes), list(preview_batch_sizes)
    looks = warm_looks(styles)
    denoised: tuple[Style, int] | None = None  # the look and batch rendered before the decoder: not rendered again
    if decoder_compiled is not None:
        # The denoiser's first render, nothing decoded, while the process still compiles the decoder: the graphs
        # the first look's first batch would trace anyway, so the wait below overlaps with their compile.
        denoised = (looks[0], batch_sizes[0])
        with slot.merged_base(), _warming(f"denoiser before the VAE decoder, {looks[0].name} {looks[0].aspect}"):
            denoise_looks(pipe, [looks[0]] * batch_sizes[0], seed=0, steps=2, batch_size=batch_sizes[0])
    with _warming("VAE decoder"):
        if decoder_compiled is not None:
            decoder_compiled()
        shapes = serving_decode_shapes(pipe, styles, batch_sizes, preview_batch_sizes)
        with _kernel_cache_use("VAE decoder"):
            warm_decoder(pipe.vae, shapes, backend=compile_backend)
    faces: set[tuple[Any, ...]] = set()  # the face pass's renders warmed: one square size, whatever the look's aspect
    with slot.merged_base():
        for style in looks:
            for batch in batch_sizes:
                if (style, batch) == denoised:  # its graphs traced; its decode's shape warmed with the decoder's
                    continue
                # Two steps: the graphs do not depend on the step count.
                with _warming(f"{style.name} {style.aspect} batch {batch}"):
                    generate_headshots(pipe, style, count=batch, seed=0, batch_size=batch, steps=2, lora_slot=slot)
            if actions:
                _warm_actions(pipe, style, batch_sizes, faces)
            if references:
                _warm_references(pipe, style, sorted({*batch_sizes, *preview_batch_sizes}))


def serving_decode_shapes(
    pipe: Any, styles: Iterable[Style], batch_sizes: Iterable[int], preview_batch_sizes: Iterable[int] = ()
) -> list[tuple[int, int, int, int]]:
    """The VAE decoder's shapes ``compile_for_serving`` warms for these arguments, in its order: what a process that
    compiles the decoder beside a worker's start must decode (``decoder_compile``)."""
    return decode_shapes(pipe, warm_looks(styles), warm_batches(batch_sizes), preview_batch_sizes)


def warm_batches(batch_sizes: Iterable[int]) -> list[int]:
    """Largest first: the first batch compiled gets graphs specialised to its size (later ones share graphs whose batch
    is dynamic), and the full batch is what most of a request renders (6 candidates: a batch of 4, then 2)."""
    return sorted(set(batch_sizes), reverse=True)


def warm_looks(styles: Iterable[Style]) -> list[Style]:
    """One of ``styles`` for each set that renders through the same graphs (size, sampler, CFG), in the order a
    worker's start warms them: non-square first. Traced first at a square size, the VAE decoder's dynamic graphs
    take one size for both height and width (dynamo's duck sizing), and the first non-square look compiled them
    again (BENCHMARKS.md)."""
    looks = {(style.aspect, style.scheduler, style.guidance_scale > 1): style for style in styles}
    return sorted(looks.values(), key=lambda style: style.aspect[0] == style.aspect[1])


def calibrate_float8_on_looks(
    pipe: Any, styles: Iterable[Style], *, steps: int = CALIBRATION_STEPS, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Calibrate the input scales of ``pipe``'s static FP8 layers (``pipeline.diffusion.float8``) on one render of
    each of ``styles``, with their prompts, sizes, samplers and CFG, at ``steps`` steps; return the layers
    calibrated. Looks that share a size, sampler and CFG denoise together, ``batch_size`` at a time (a request's
    batch, which fits wherever requests do), and none is decoded: the scales are the largest inputs each layer saw,
    the same whether the images came one at a time or in a batch. Run it eager and before any compile: the
    calibrating forward is not the graph a worker serves."""
    from pipeline.diffusion.float8_scales import calibrate_float8

    looks = list({_calibration_look(style): style for style in styles}.values())
    calls = 0

    def render_all() -> None:
        nonlocal calls
        calls = denoise_looks(pipe, looks, seed=0, steps=steps, batch_size=batch_size)

    layers = calibrate_float8(pipe.unet, render_all)
    log.info("FP8 calibration: %d looks of %d steps in %d batches", len(looks), steps, calls)
    return layers


def calibrated_float8(pipe: Any, styles: Iterable[Style], scales_file: Path, slot: LoraSlot | None = None) -> bool:
    """Give ``pipe``'s static FP8 layers their input scales: those kept in ``scales_file`` when they were calibrated
    for these weights by the same renders, else calibrated now (``calibrate_float8_on_looks``) and kept there for
    the next start. Return whether the kept ones served.

    ``slot`` (the worker's, holding zeros) is merged while the renders calibrate, as for a request: its layers then
    run their base alone, without the zero LoRA's products and adds, each a launch the eager renders wait on
    (``bench.calibration_cost``); the scales are the same to the bit, the LoRA adding exact zeros."""
    from pipeline.diffusion.float8_scales import CALIBRATION_HEADROOM, load_input_scales, save_input_scales

    styles = list(styles)
    looks = [_calibration_look(style) for style in styles]
    what = json.dumps([looks, CALIBRATION_STEPS, CALIBRATION_HEADROOM, str(pipe.unet.dtype)], default=str)
    recipe = hashlib.sha256(what.encode()).hexdigest()
    if load_input_scales(pipe.unet, scales_file, recipe=recipe):
        return True
    with slot.merged_base() if slot is not None else nullcontext():
        calibrate_float8_on_looks(pipe, styles)
    try:
        save_input_scales(pipe.unet, scales_file, recipe=recipe)
    except OSError as error:  # a read-only or full volume costs the next start a calibration, not this one
        log.warning("could not keep the FP8 scales in %s (%s); the next start calibrates again", scales_file, error)
    return False


def _calibration_look(style: Style) -> tuple[Any, ...]:
    """What of ``style`` moves the activations a calibration render sees: the renders it keys, and the kept scales'
    recipe, are both made of it."""
    return (style.prompt, style.negative_prompt, style.aspect, style.guidance_scale, style.scheduler)


def _warm_references(pipe: Any, style: Style, batch_sizes: list[int]) -> None:
    """klein's shapes with reference tokens: previews from two selfie crops, in their batches; an action from one
    headshot at its size in the same batches, and an upscale at twice it (the slot, merged with zeros, is the
    same graph with a user's LoRA or without)."""
    from PIL import Image

    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.references import (
        MAX_REFERENCES,
        reference_crops,
        render_from_headshot,
        render_from_references,
    )

    width, height = headshot_size(pipe, style.aspect)
    gray = Image.new("RGB", (width, height), "gray")
    selfies = reference_crops(pipe, [gray] * MAX_REFERENCES)
    for batch in batch_sizes:
        with _warming(f"{style.name} from selfies, batch {batch}"):
            render_from_references(pipe, selfies, style, count=batch, seed=0, steps=2)
    for batch, size in [*((batch, (width, height)) for batch in batch_sizes), (1, (2 * width, 2 * height))]:
        with _warming(f"{style.name} from a headshot at {size[0]}x{size[1]}, batch {batch}"):
            render_from_headshot(pipe, gray, style, size=size, count=batch, seed=0, steps=2)


def _warm_actions(pipe: Any, style: Style, batch_sizes: Iterable[int], faces: set[tuple[Any, ...]]) -> None:
    """The shapes the actions on a headshot render at: variations and remixes at the headshot's size, in the same
    batches; an upscale at twice it; the face pass one native square at a time, unless ``faces`` holds a look that
    renders it alike (its sampler and CFG: the square is every aspect's), then added to it."""
    from PIL import Image

    from pipeline.diffusion.face_pass import FACE_STRENGTH
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.img2img import UPSCALE_STRENGTH, VARIATION_STRENGTH, image_to_image, render_from_images

    width, height = headshot_size(pipe, style.aspect)
    start = Image.new("RGB", (width, height), "gray")
    for batch in sorted(set(batch_sizes)):
        with _warming(f"{style.name} variations at {width}x{height}, batch {batch}"):
            image_to_image(pipe, start, style, strength=VARIATION_STRENGTH, count=batch, seed=0, steps=2)
    with _warming(f"{style.name} upscale to {2 * width}x{2 * height}"):
        image_to_image(
            pipe, start, style, strength=UPSCALE_STRENGTH, count=1, seed=0, size=(2 * width, 2 * height), steps=2
        )
    face = (style.scheduler, style.guidance_scale > 1)
    if face in faces:
        return
    faces.add(face)
    square = Image.new("RGB", headshot_size(pipe, (1, 1)), "gray")
    with _warming(f"{style.name} face pass at {square.width}x{square.height}"):
        render_from_images(pipe, [square], style, strength=FACE_STRENGTH, seeds=[0], steps=2)
