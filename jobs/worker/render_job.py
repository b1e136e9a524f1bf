"""The ``generate_headshots`` job: render the request's style with the user's LoRA, keep the best likenesses.

A request renders from the prompt (``/headshot``), from one of the user's headshots (``/more``, ``/remix``,
``/upscale``), or, with no LoRA, from the user's selfies (the preview: ``RenderMode``); small faces, and every
upscale, then get the face pass (never a preview's: it has no LoRA to keep the face).
"""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.contract.events import ImagesReady, RenderedImage
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, RenderMode
from jobs.worker.laps import Laps
from jobs.worker.png import encode_pngs
from jobs.worker.ranking import candidate_count, load_reference, rank_headshots
from jobs.worker.state import WORKER_NAME, WorkerState, worker_state
from jobs.worker.supervision import announce_start, report_failure, report_stop
from jobs.worker.threads import ProgressReporter
from pipeline.errors import JobCancelled, OutOfGpuMemory, Reason, UserInputError

if TYPE_CHECKING:
    from pipeline.selfies.faces import Face

__all__ = ["generate_headshots"]

log = logging.getLogger(__name__)


async def generate_headshots(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Render the request's headshots with the user's LoRA, store PNGs, publish ``images_ready``."""
    request = GenerateRequest.from_dict(payload)
    state = worker_state(ctx)
    settings, storage = state.settings, state.storage
    job_id: str = ctx["job_id"]
    progress = ProgressReporter(state.events, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, JobKind.GENERATE, request.user_key, WORKER_NAME)
    # Where a request's time goes, for the log: this request's GPU work is the "GPU" stage (in the others the GPU
    # idles, or renders the next request with HEADSHOT_WORKER_OVERLAP).
    laps = Laps(state.collections)
    try:
        # 1. The user's LoRA as a local file for diffusers' loader, and the headshot an action starts from.
        reference = await load_reference(storage, request.lora_key)
        renders = (
            1
            if request.mode == RenderMode.UPSCALE
            else candidate_count(request.count, settings.headshot_candidates, reference)
        )
        # Every key lies under the request's own user's folder (``GenerateRequest`` refuses any other).
        source = None if request.source_key is None else await storage.get(request.source_key)
        selfies = list(await asyncio.gather(*(storage.get(key) for key in request.reference_keys)))
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            lora_path = None
            if request.mode != RenderMode.PREVIEW:  # a preview renders before (or without) any LoRA
                lora_path = Path(scratch) / "pytorch_lora_weights.safetensors"
                await storage.get_file(request.lora_key, lora_path)
            laps.lap("fetch")

            # 2. Render in a thread.
            def on_images(done: int, total: int) -> None:
                # Counted in the headshots the user asked for, though extra candidates are rendered for ranking.
                progress.report(done * request.count // total, request.count)

            images = await state.gpu.run(
                progress,
                lambda: _render(state, request, source, selfies, renders, lora_path, on_images, progress.stop.is_set),
                more=request.mode == RenderMode.UPSCALE,  # its face pass follows
            )
            laps.lap("GPU")
            # 3. The image safety check on every candidate, so the next-best safe one takes a flagged one's place;
            #    what it flags is dropped here, never stored, and only counted.
            images, dropped = await asyncio.to_thread(_withhold_unsafe, state, job_id, images)
            laps.lap("safety")
            # 4. Keep the best likenesses, from the faces found in every candidate at once; 5. give small faces
            #    (every face, in an upscale) the face pass, whose re-rendered images are checked again. The faces
            #    found for the ranking serve the face pass too.
            found: list[list[Face]] = []  # unranked renders are searched by the face pass, if it needs them
            if reference is not None:
                found = await state.face_search.faces([item.image for item in images])
            ranked = rank_headshots(images, found, reference, request.count, settings.identity_min_score)
            faces_of = {id(item): faces for item, faces in zip(images, found, strict=True)} if found else {}
            laps.lap("ranking")
            passed = await _face_pass(state, request, ranked, lora_path, progress, faces_of)
            state.gpu.rest()  # an upscale with no face to pass asks for no section after all
            laps.lap("face pass")
            redone = [new for new, old in zip(passed, ranked, strict=True) if new[0].image is not old[0].image]
            safe, more = await asyncio.to_thread(_withhold_unsafe, state, job_id, [new for new, _ in redone])
            flagged = {id(new) for new, _ in redone} - {id(new) for new in safe}
            ranked = [item for item in passed if id(item[0]) not in flagged]
            dropped += more
            laps.lap("safety")
        # 6. Store the PNGs; the event carries keys, seeds, scores, never bytes.
        # All images at once, in strips on every core (jobs/worker/png.py): the GPU waits for this step.
        encoded = await asyncio.to_thread(encode_pngs, [generated.image for generated, _ in ranked])
        laps.lap("PNG")
        results = []
        for number, ((generated, score), data) in enumerate(zip(ranked, encoded, strict=True)):
            key = f"{request.output_prefix}{number:02d}-seed{generated.seed}.png"
            await storage.put(key, data)
            results.append(RenderedImage(key, generated.seed, score))
        laps.lap("store")
    except (asyncio.CancelledError, JobCancelled):
        await asyncio.shield(report_stop(ctx, JobKind.GENERATE, request.user_key, request.output_prefix))
        raise
    except Exception as error:
        await report_failure(ctx, JobKind.GENERATE, request.user_key, error, shown=(UserInputError, OutOfGpuMemory))
        raise
    ready = ImagesReady(
        user_key=request.user_key,
        job_id=job_id,
        style=request.style.name,
        title=request.style.title,
        images=tuple(results),
        dropped=dropped,
    )
    await state.events.publish(ready)
    laps.lap("event")
    log.info("rendered %d headshots in %.2f s: %s", len(results), laps.total, laps)
    images = [image.to_dict() for image in ready.images]
    return {"style": ready.style, "title": ready.title, "images": images, "dropped": dropped}


def _render(
    state: WorkerState,
    request: GenerateRequest,
    source: bytes | None,
    selfies: list[bytes],
    renders: int,
    lora_path: Path | None,
    on_images: Any,
    should_stop: Any,
) -> list[Any]:
    """The request's renders (``GeneratedImage``s), from its prompt, its source headshot or its selfies. Blocking."""

    from pipeline.diffusion.generation import generate_headshots as render
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.img2img import (
        REMIX_STRENGTH,
        UPSCALE_STRENGTH,
        VARIATION_STRENGTH,
        image_to_image,
        supports_actions,
    )

    model, steps = state.model, state.settings.inference_steps
    if request.mode == RenderMode.PREVIEW:
        return _render_preview(state, request, selfies, renders, on_images, should_stop)
    if source is None:
        return render(
            model.pipe,
            request.style,
            count=renders,
            seed=request.seed,
            lora_path=lora_path,
            on_progress=on_images,
            steps=steps,
            should_stop=should_stop,
            lora_slot=model.lora_slot,
            subject=request.subject,
        )
    from pipeline.diffusion.references import render_from_headshot, supports_references

    img2img = supports_actions(model.pipe)
    if not img2img and not supports_references(model.pipe):
        raise UserInputError(f"{request.mode} on a model without actions", reason=Reason.ACTION_UNSUPPORTED)
    start = _rgb(source)
    # From the headshot size whatever the source's (an upscale's variation, an upscale of an upscale): sizes stay
    # bounded, and the shapes are the ones a warm worker compiled for.
    width, height = headshot_size(model.pipe, request.style.aspect)
    size, strength = (width, height), REMIX_STRENGTH if request.mode == RenderMode.REMIX else VARIATION_STRENGTH
    if request.mode == RenderMode.UPSCALE:
        size, strength = (2 * width, 2 * height), UPSCALE_STRENGTH
    if not img2img:  # klein: the headshot as its reference image
        assert lora_path is not None  # only a preview renders without one
        return render_from_headshot(
            model.pipe,
            start,
            request.style,
            size=size,
            count=renders,
            seed=request.seed,
            lora_path=lora_path,
            lora_slot=model.lora_slot,
            subject=request.subject,
            steps=steps,
            on_progress=on_images,
            should_stop=should_stop,
        )
    return image_to_image(
        model.pipe,
        start,
        request.style,
        strength=strength,
        count=renders,
        seed=request.seed,
        size=size,
        lora_path=lora_path,
        lora_slot=model.lora_slot,
        steps=steps,
        on_progress=on_images,
        should_stop=should_stop,
        subject=request.subject,
    )


def _render_preview(
    state: WorkerState, request: GenerateRequest, selfies: list[bytes], renders: int, on_images: Any, should_stop: Any
) -> list[Any]:
    """A preview's renders: the style, showing the person in face-centred crops of the selfies. Blocking."""

    from pipeline.diffusion.references import reference_crops, render_from_references, supports_references

    pipe = state.model.pipe
    if not supports_references(pipe):
        raise UserInputError(f"a preview on a {type(pipe).__name__}", reason=Reason.PREVIEW_UNSUPPORTED)
    references = reference_crops(pipe, [_rgb(data) for data in selfies], request.reference_centers)
    return render_from_references(
        pipe,
        references,
        request.style,
        count=renders,
        seed=request.seed,
        subject=request.subject,
        steps=state.settings.inference_steps,
        on_progress=on_images,
        should_stop=should_stop,
        lora_slot=state.model.lora_slot,
    )


def _rgb(data: bytes) -> Any:
    """A stored image (a headshot's PNG, a selfie's JPEG) decoded to RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


async def _face_pass(
    state: WorkerState,
    request: GenerateRequest,
    ranked: list[Any],
    lora_path: Path | None,
    progress: ProgressReporter,
    faces_of: dict[int, list[Face]],
) -> list[Any]:
    """``ranked`` with the face pass done where it applies: every face in an upscale, else faces below the
    ``face_pass_below`` share of the width (0: none). The faces are found on the host first (``faces_of``, by the
    render's ``id``, holds those the ranking found); only a request with a face to re-render takes a GPU turn."""
    from pipeline.diffusion.face_pass import crops_to_pass, face_pass
    from pipeline.diffusion.generation import GeneratedImage
    from pipeline.diffusion.img2img import supports_actions

    upscale = request.mode == RenderMode.UPSCALE
    below = state.settings.face_pass_below
    # The face pass is image-to-image: where the model has none (klein), its renders stay as they are.
    if not ranked or lora_path is None or (not upscale and below <= 0) or not supports_actions(state.model.pipe):
        return ranked
    originals = [generated.image for generated, _ in ranked]
    if all(id(generated) in faces_of for generated, _ in ranked):
        found = [faces_of[id(generated)] for generated, _ in ranked]
    else:
        found = await state.face_search.faces(originals)
    crops = crops_to_pass(originals, found, only_below=None if upscale else below)
    if not crops:
        return ranked
    images = await state.gpu.run(
        progress,
        lambda: face_pass(
            state.model.pipe,
            originals,
            state.faces,
            request.style,
            seeds=[generated.seed for generated, _ in ranked],
            lora_path=lora_path,
            lora_slot=state.model.lora_slot,
            steps=state.settings.inference_steps,
            should_stop=progress.stop.is_set,
            subject=request.subject,
            crops=crops,
        ),
    )
    return [
        (GeneratedImage(image, generated.seed), score) for image, (generated, score) in zip(images, ranked, strict=True)
    ]


def _withhold_unsafe(state: WorkerState, job_id: str, renders: list[Any]) -> tuple[list[Any], int]:
    """``renders`` (``GeneratedImage``s) without those the image safety check flags, and how many those were.
    Blocking."""
    if state.image_safety is None:
        return renders, 0
    kept = []
    for generated in renders:
        findings = state.image_safety.findings(generated.image)
        if findings:
            # Labels and scores only: they say why without showing what.
            found = ", ".join(f"{finding.label} {finding.score:.2f}" for finding in findings)
            log.warning(
                "job %s: withheld a render (seed %d) the image safety check flagged: %s", job_id, generated.seed, found
            )
        else:
            kept.append(generated)
    dropped = len(renders) - len(kept)
    if dropped:
        state.monitor.withheld.inc(dropped)
    return kept, dropped
