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

from jobs.events import Event, EventPublisher, EventType
from jobs.payloads import GENERATE_FUNCTION, TRAIN_FUNCTION, GenerateRequest, TrainRequest
from jobs.settings import Settings
from jobs.storage import BlobStorage, LocalStorage
from jobs.supervision import after_job_end, announce_start, on_job_start, report_stop, worker_redis_settings
from pipeline.errors import OutOfGpuMemory, UserInputError

__all__ = ["build_worker", "generate_headshots", "on_startup", "train_lora"]

log = logging.getLogger(__name__)

FAILED_TRAINING_TEXT = "Training failed on our side. Your selfies are kept: send /train start to try again."
FAILED_GENERATION_TEXT = "Rendering failed on our side. Send the same /headshot command to try again."
# Named in every ``started`` event, so operators (and the scale-out benchmark) see which worker ran a job.
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


async def on_startup(ctx: dict[str, Any]) -> None:
    """Load the base model once per worker process, into ``ctx``."""
    from pipeline.loading import load_base_pipeline

    settings: Settings = ctx["settings"]
    ctx.setdefault("storage", LocalStorage(settings.resolved_storage_dir))
    ctx["events"] = EventPublisher(ctx["redis"], settings.events_stream)
    if "pipe" in ctx:  # handed in already loaded (tests share one tiny pipeline across workers)
        return
    started = time.monotonic()
    ctx["pipe"] = await asyncio.to_thread(
        load_base_pipeline,
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        cache_dir=settings.resolved_model_cache_dir,
    )
    log.info("model %s loaded in %.1f s", settings.model, time.monotonic() - started)


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
    from pipeline.training import TrainingCancelled, TrainingConfig, TrainingProgress
    from pipeline.training import train_lora as run_training

    request = TrainRequest(**payload)
    settings: Settings = ctx["settings"]
    storage: BlobStorage = ctx["storage"]
    job_id: str = ctx["job_id"]
    progress = _Progress(ctx, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, "train", request.user_key, WORKER_NAME)
    try:
        # 1. Fetch the selfies the bot already checked and normalised (plain RGB JPEGs, no metadata).
        images = [Image.open(io.BytesIO(await storage.get(key))).convert("RGB") for key in request.selfie_keys]
        config = TrainingConfig(
            rank=settings.lora_rank, steps=settings.train_steps, learning_rate=settings.learning_rate, seed=request.seed
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
                ),
            )
            await storage.put(request.lora_key, result.lora_path.read_bytes())
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
    from pipeline.generation import GenerationCancelled
    from pipeline.generation import generate_headshots as render
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
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            lora_path = Path(scratch) / "pytorch_lora_weights.safetensors"
            lora_path.write_bytes(await storage.get(request.lora_key))

            # 2. Render in a thread.
            def on_images(done: int, total: int) -> None:
                progress.report({"done": done, "total": total}, final=done == total)

            images = await _run_in_thread(
                progress,
                lambda: render(
                    ctx["pipe"],
                    style,
                    count=request.count,
                    seed=request.seed,
                    lora_path=lora_path,
                    on_progress=on_images,
                    steps=settings.inference_steps,
                    should_stop=progress.stop.is_set,
                ),
            )
        # 3. Store the PNGs; the event carries keys and seeds, never bytes.
        results = []
        for number, generated in enumerate(images):
            buffer = io.BytesIO()
            generated.image.save(buffer, format="PNG")
            key = f"{request.output_prefix}{number:02d}-seed{generated.seed}.png"
            await storage.put(key, buffer.getvalue())
            results.append({"key": key, "seed": generated.seed})
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


def build_worker(settings: Settings, redis_url: str, **overrides: Any) -> Worker:
    """An arq worker for ``settings``: one job at a time (one GPU, one model), aborts allowed, per-job timeouts.

    ``overrides`` go to arq's ``Worker`` (tests pass ``burst=True, poll_delay=0``; a test may pass ``ctx``).
    """
    ctx: dict[str, Any] = {"settings": settings, **overrides.pop("ctx", {})}
    tries = settings.job_max_tries + 1  # one more than ours: announce_start ends a job with a reason, arq silently
    options: dict[str, Any] = {
        "functions": [
            func(train_lora, name=TRAIN_FUNCTION, timeout=settings.train_timeout_s, max_tries=tries),
            func(generate_headshots, name=GENERATE_FUNCTION, timeout=settings.generate_timeout_s, max_tries=tries),
        ],
        "queue_name": settings.queue_name,
        "redis_settings": worker_redis_settings(redis_url),  # rides out a Redis restart
        "on_startup": on_startup,
        "on_job_start": on_job_start,  # short in-progress leases (jobs/supervision.py)
        "after_job_end": after_job_end,
        "max_jobs": 1,
        "allow_abort_jobs": True,
        "keep_result": 3600,
        "health_check_interval": 30,
        "handle_signals": True,
        "ctx": ctx,
    }
    options.update(overrides)
    worker = Worker(**options)
    ctx["worker"] = worker  # the jobs tell a /cancel from a timeout or a shutdown by asking it (supervision.py)
    return worker
