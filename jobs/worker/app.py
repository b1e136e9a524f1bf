"""The arq worker: loads the base pipeline once, then runs ``train_lora`` and ``generate_headshots`` jobs.

The pipeline is imported lazily (in ``on_startup`` and the jobs), so ``jobs`` stays importable without torch.
Torch work runs in a thread so the event loop keeps arq's heartbeat, abort checks and progress events moving.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arq import func
from arq.worker import Worker
from PIL import Image

from jobs.contract.events import Event, EventPublisher, EventType
from jobs.contract.payloads import GENERATE_FUNCTION, TRAIN_FUNCTION, GenerateRequest, TrainRequest
from jobs.settings import Settings
from jobs.storage import BlobStorage, open_storage
from jobs.worker.model_setup import prepare_model, training_plan
from jobs.worker.monitor import WorkerMonitor
from jobs.worker.ranking import candidate_count, load_reference, rank_headshots
from jobs.worker.retention import retention_cron
from jobs.worker.supervision import after_job_end, announce_start, on_job_start, report_stop, worker_redis_settings
from pipeline.errors import OutOfGpuMemory, UserInputError

__all__ = ["build_worker", "generate_headshots", "on_shutdown", "on_startup", "train_lora"]

log = logging.getLogger(__name__)

FAILED_TRAINING_TEXT = "Training failed on our side. Your selfies are kept: send /train start to try again."
FAILED_GENERATION_TEXT = "Rendering failed on our side. Send the same /headshot command to try again."
# Named in every ``started`` event, so operators (and the scale-out benchmark) see which worker ran a job.
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


async def on_startup(ctx: dict[str, Any]) -> None:
    """Load the base model once per worker process, into ``ctx``."""
    from pipeline.selfies.faces import FaceAnalyzer

    settings: Settings = ctx["settings"]
    if "storage" not in ctx:  # tests may hand one in
        ctx["storage"] = ctx["owned_storage"] = await open_storage(settings)
    if "faces" not in ctx:  # scores each render's likeness; loaded now so no job waits for it
        ctx["faces"] = await asyncio.to_thread(FaceAnalyzer().load)
    ctx["events"] = EventPublisher(ctx["redis"], settings.events_stream)
    await ctx["monitor"].start(ctx["redis"])  # metrics endpoint and heartbeat, before the model takes minutes
    if "pipe" in ctx:  # handed in already loaded (tests share one tiny pipeline, and so no slot, across workers)
        ctx["train_plan"] = await asyncio.to_thread(training_plan, ctx["pipe"], settings)
        return
    await asyncio.to_thread(prepare_model, ctx, settings)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    """Stop the metrics endpoint and heartbeat; close the storage ``on_startup`` opened (an S3 client's pool)."""
    await ctx["monitor"].stop()
    if "owned_storage" in ctx:
        del ctx["storage"]
        await ctx.pop("owned_storage").aclose()


class _Progress:
    """Turns callbacks from the torch thread into throttled events on the event loop."""

    def __init__(self, ctx: dict[str, Any], user_key: str, job_id: str, interval_s: float) -> None:
        self._events: EventPublisher = ctx["events"]
        self._loop = asyncio.get_running_loop()
        self._user_key = user_key
        self._job_id = job_id
        self._interval_s = interval_s
        self._last = 0.0
        self.stop = threading.Event()

    def report(self, data: dict[str, Any], *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self._interval_s:
            return
        self._last = now
        event = Event(EventType.PROGRESS, self._user_key, self._job_id, data)
        asyncio.run_coroutine_threadsafe(self._events.publish(event), self._loop)


async def _run_in_thread(progress: _Progress, work: Callable[[], Any]) -> Any:
    """Run torch work in a thread; on cancellation (``/cancel`` or timeout) tell the thread to stop and wait."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        progress.stop.set()
        # The training loop checks the flag every step; wait so the pipeline is clean before the next job.
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # the thread's TrainingCancelled: retrieved, so asyncio does not log it as lost
        raise


async def _publish(ctx: dict[str, Any], event_type: EventType, user_key: str, job_id: str, **data: Any) -> None:
    await ctx["events"].publish(Event(event_type, user_key, job_id, data))


async def train_lora(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Train the session's LoRA and store it; publish progress, then ``trained`` (or ``failed``/``cancelled``)."""
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import TrainingCancelled, TrainingProgress
    from pipeline.diffusion.training.loop import train_lora as run_training

    request = TrainRequest(**payload)
    settings: Settings = ctx["settings"]
    storage: BlobStorage = ctx["storage"]
    job_id: str = ctx["job_id"]
    progress = _Progress(ctx, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, "train", request.user_key, WORKER_NAME)
    try:
        # 1. Fetch the selfies the bot already checked and normalised (plain RGB JPEGs, no metadata).
        images = [Image.open(io.BytesIO(await storage.get(key))).convert("RGB") for key in request.selfie_keys]
        plan = ctx["train_plan"]
        config = TrainingConfig(
            rank=settings.lora_rank,
            steps=settings.train_steps,
            learning_rate=settings.learning_rate,
            seed=request.seed,
            batch_size=plan.batch_size,
            gradient_checkpointing=plan.gradient_checkpointing,
        )

        def on_progress(step: TrainingProgress) -> None:
            data = {"step": step.step, "total": step.total_steps, "loss": round(step.loss, 5), "eta_s": step.eta_s}
            progress.report(data, final=step.step == step.total_steps)

        # 2. Train in a thread, into a scratch folder, then 3. store the weights.
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            result = await _run_in_thread(
                progress,
                lambda: run_training(
                    ctx["pipe"],
                    images,
                    config,
                    Path(scratch),
                    on_progress=on_progress,
                    should_stop=progress.stop.is_set,
                    class_images=ctx.get("class_images"),
                    slot=ctx.get("training_slot"),
                    crop_centers=[(x, y) for x, y in request.crop_centers] if request.crop_centers else None,
                ),
            )
            await storage.put_file(request.lora_key, result.lora_path)
    except (asyncio.CancelledError, TrainingCancelled):
        await asyncio.shield(report_stop(ctx, "train", request.user_key))
        raise
    except UserInputError as error:
        await _publish(ctx, EventType.FAILED, request.user_key, job_id, kind="train", reason=str(error))
        raise
    except Exception:
        log.exception("training job %s failed", job_id)
        await _publish(ctx, EventType.FAILED, request.user_key, job_id, kind="train", reason=FAILED_TRAINING_TEXT)
        raise
    summary = {"lora_key": request.lora_key, "seconds": round(result.seconds, 2), "final_loss": result.losses[-1]}
    await _publish(ctx, EventType.TRAINED, request.user_key, job_id, **summary)
    return summary


async def generate_headshots(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Render the request's headshots with the user's LoRA, store PNGs, publish ``images_ready``."""
    from pipeline.diffusion.generation import GenerationCancelled
    from pipeline.diffusion.generation import generate_headshots as render
    from pipeline.styles import CUSTOM_STYLE_NAME, custom_style, resolve_style

    request = GenerateRequest(**payload)
    settings: Settings = ctx["settings"]
    storage: BlobStorage = ctx["storage"]
    job_id: str = ctx["job_id"]
    progress = _Progress(ctx, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, "generate", request.user_key, WORKER_NAME)
    try:
        # 1. The user's LoRA as a local file for diffusers' loader.
        style = (
            custom_style(request.extra["description"])
            if request.style == CUSTOM_STYLE_NAME
            else resolve_style(request.style)
        )
        reference = await load_reference(storage, request.lora_key)
        renders = candidate_count(request.count, settings.headshot_candidates, reference)
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            lora_path = Path(scratch) / "pytorch_lora_weights.safetensors"
            await storage.get_file(request.lora_key, lora_path)

            # 2. Render in a thread.
            def on_images(done: int, total: int) -> None:
                # Counted in the headshots the user asked for, though extra candidates are rendered for ranking.
                data = {"done": done * request.count // total, "total": request.count}
                progress.report(data, final=done == total)

            images = await _run_in_thread(
                progress,
                lambda: render(
                    ctx["pipe"],
                    style,
                    count=renders,
                    seed=request.seed,
                    lora_path=lora_path,
                    on_progress=on_images,
                    steps=settings.inference_steps,
                    should_stop=progress.stop.is_set,
                    lora_slot=ctx.get("lora_slot"),
                ),
            )
        # 3. Keep the best likenesses, then 4. store the PNGs; the event carries keys, seeds, scores, never bytes.
        ranked = await asyncio.to_thread(
            rank_headshots, ctx["faces"], images, reference, request.count, settings.identity_min_score
        )
        # All images at once, one thread each: zlib lets go of the GIL, and the GPU waits for this step.
        encoded = await asyncio.gather(*(asyncio.to_thread(_png_bytes, generated.image) for generated, _ in ranked))
        results = []
        for number, ((generated, score), data) in enumerate(zip(ranked, encoded, strict=True)):
            key = f"{request.output_prefix}{number:02d}-seed{generated.seed}.png"
            await storage.put(key, data)
            results.append({"key": key, "seed": generated.seed, **({} if score is None else {"score": score})})
    except (asyncio.CancelledError, GenerationCancelled):
        await asyncio.shield(report_stop(ctx, "generate", request.user_key, request.output_prefix))
        raise
    except (UserInputError, OutOfGpuMemory) as error:
        await _publish(ctx, EventType.FAILED, request.user_key, job_id, kind="generate", reason=str(error))
        raise
    except Exception:
        log.exception("generation job %s failed", job_id)
        await _publish(ctx, EventType.FAILED, request.user_key, job_id, kind="generate", reason=FAILED_GENERATION_TEXT)
        raise
    await _publish(ctx, EventType.IMAGES_READY, request.user_key, job_id, style=style.name, images=results)
    return {"images": results}


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    # Level 1: a third of level 6's time for ~15% larger files, which the chat platforms recompress anyway.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def _on_job_start(ctx: dict[str, Any]) -> None:
    await on_job_start(ctx)  # short in-progress leases (jobs/worker/supervision.py)
    await ctx["monitor"].on_job_start(ctx)


WORKER_POLL_DELAY_S = 0.1


def build_worker(settings: Settings, redis_url: str, **overrides: Any) -> Worker:
    """An arq worker for ``settings``: one job at a time (one GPU, one model), aborts allowed, per-job timeouts.

    ``overrides`` go to arq's ``Worker`` (tests pass ``burst=True, poll_delay=0``; a test may pass ``ctx``).
    """
    monitor = WorkerMonitor(settings, WORKER_NAME)
    train, generate = monitor.instrument("train", train_lora), monitor.instrument("generate", generate_headshots)
    ctx: dict[str, Any] = {"settings": settings, "monitor": monitor, **overrides.pop("ctx", {})}
    tries = settings.job_max_tries + 1  # one more than ours: announce_start ends a job with a reason, arq silently
    options: dict[str, Any] = {
        "functions": [
            func(train, name=TRAIN_FUNCTION, timeout=settings.train_timeout_s, max_tries=tries),
            func(generate, name=GENERATE_FUNCTION, timeout=settings.generate_timeout_s, max_tries=tries),
        ],
        "cron_jobs": [retention_cron()],
        "queue_name": settings.queue_name,
        "redis_settings": worker_redis_settings(redis_url),  # rides out a Redis restart
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": _on_job_start,
        "after_job_end": after_job_end,
        "max_jobs": 1,
        # arq looks for the next job this often; its 0.5 s default leaves the GPU idle ~0.25 s per job on average,
        # ~3 s per customer (11 jobs), for a Redis query every 0.1 s instead.
        "poll_delay": WORKER_POLL_DELAY_S,
        "allow_abort_jobs": True,
        "keep_result": 3600,
        "health_check_interval": settings.health_check_interval_s,
        "handle_signals": True,
        "ctx": ctx,
    }
    options.update(overrides)
    worker = Worker(**options)
    ctx["worker"] = worker  # the jobs tell a /cancel from a timeout or a shutdown by asking it (supervision.py)
    return worker
