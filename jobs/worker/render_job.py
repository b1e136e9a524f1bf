"""The ``generate_headshots`` job: render the request's style with the user's LoRA, keep the best likenesses."""

from __future__ import annotations

import asyncio
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

from jobs.contract.events import ImagesReady, RenderedImage
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest
from jobs.worker.ranking import candidate_count, load_reference, rank_headshots
from jobs.worker.state import WORKER_NAME, worker_state
from jobs.worker.supervision import announce_start, report_failure, report_stop
from jobs.worker.threads import ProgressReporter, run_in_thread
from pipeline.errors import JobCancelled, OutOfGpuMemory, UserInputError

__all__ = ["generate_headshots"]

log = logging.getLogger(__name__)


async def generate_headshots(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Render the request's headshots with the user's LoRA, store PNGs, publish ``images_ready``."""
    from pipeline.diffusion.generation import generate_headshots as render

    request = GenerateRequest.from_dict(payload)
    state = worker_state(ctx)
    settings, storage = state.settings, state.storage
    job_id: str = ctx["job_id"]
    progress = ProgressReporter(state.events, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, JobKind.GENERATE, request.user_key, WORKER_NAME)
    try:
        # 1. The user's LoRA as a local file for diffusers' loader.
        reference = await load_reference(storage, request.lora_key)
        renders = candidate_count(request.count, settings.headshot_candidates, reference)
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            lora_path = Path(scratch) / "pytorch_lora_weights.safetensors"
            await storage.get_file(request.lora_key, lora_path)

            # 2. Render in a thread.
            def on_images(done: int, total: int) -> None:
                # Counted in the headshots the user asked for, though extra candidates are rendered for ranking.
                progress.report(done * request.count // total, request.count)

            images = await run_in_thread(
                progress,
                lambda: render(
                    state.model.pipe,
                    request.style,
                    count=renders,
                    seed=request.seed,
                    lora_path=lora_path,
                    on_progress=on_images,
                    steps=settings.inference_steps,
                    should_stop=progress.stop.is_set,
                    lora_slot=state.model.lora_slot,
                    subject=request.subject,
                ),
            )
        # 3. Keep the best likenesses, then 4. store the PNGs; the event carries keys, seeds, scores, never bytes.
        ranked = await asyncio.to_thread(
            rank_headshots, state.faces, images, reference, request.count, settings.identity_min_score
        )
        # All images at once, one thread each: zlib lets go of the GIL, and the GPU waits for this step.
        encoded = await asyncio.gather(*(asyncio.to_thread(_png_bytes, generated.image) for generated, _ in ranked))
        results = []
        for number, ((generated, score), data) in enumerate(zip(ranked, encoded, strict=True)):
            key = f"{request.output_prefix}{number:02d}-seed{generated.seed}.png"
            await storage.put(key, data)
            results.append(RenderedImage(key, generated.seed, score))
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
    )
    await state.events.publish(ready)
    return {"style": ready.style, "title": ready.title, "images": [image.to_dict() for image in ready.images]}


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    # Level 1: a third of level 6's time for ~15% larger files, which the chat platforms recompress anyway.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
