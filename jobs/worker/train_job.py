"""The ``train_lora`` job: fetch a session's selfies, train the user's LoRA, store it, and say how it went."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.contract.events import Trained
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import TrainRequest
from jobs.settings import Settings
from jobs.worker.state import WORKER_NAME, worker_state
from jobs.worker.supervision import announce_start, report_failure, report_stop
from jobs.worker.threads import ProgressReporter
from pipeline.errors import JobCancelled, UserInputError

if TYPE_CHECKING:
    from pipeline.diffusion.training.config import TrainingConfig

__all__ = ["train_lora", "training_config"]

log = logging.getLogger(__name__)


async def train_lora(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Train the session's LoRA and store it; publish progress, then ``trained`` (or ``failed``/``cancelled``)."""
    from pipeline.diffusion.training.dataset import decode_for_training
    from pipeline.diffusion.training.loop import TrainingProgress
    from pipeline.diffusion.training.loop import train_lora as run_training

    request = TrainRequest.from_dict(payload)
    state = worker_state(ctx)
    settings, storage, model = state.settings, state.storage, state.model
    job_id: str = ctx["job_id"]
    progress = ProgressReporter(state.events, request.user_key, job_id, settings.progress_interval_s)
    await announce_start(ctx, JobKind.TRAIN, request.user_key, WORKER_NAME)
    try:
        # 1. Fetch the selfies the bot already checked and normalised (plain RGB JPEGs, no metadata), all at once (on
        #    S3 each is a round trip), and decode them off the event loop and before the GPU turn: a phone's 12 MP
        #    photos are slow to decode whole (``decode_for_training`` says how it decodes less).
        config = training_config(request, settings, model.train_plan)
        photos = await asyncio.gather(*(storage.get(key) for key in request.selfie_keys))
        images = await asyncio.to_thread(decode_for_training, model.training_pipe, photos, config.resolution)

        def on_progress(step: TrainingProgress) -> None:
            progress.report(step.step, step.total_steps, eta_s=step.eta_s, loss=round(step.loss, 5))

        # 2. Train in a thread, into a scratch folder, then 3. store the weights.
        with tempfile.TemporaryDirectory(prefix="lora-") as scratch:
            result = await state.gpu.run(
                progress,
                lambda: run_training(
                    model.training_pipe,
                    images,
                    config,
                    Path(scratch),
                    on_progress=on_progress,
                    should_stop=progress.stop.is_set,
                    class_images=model.class_images_for(config.class_prompt),
                    slot=model.training_slot,
                    crop_centers=[(x, y) for x, y in request.crop_centers] if request.crop_centers else None,
                ),
            )
            await storage.put_file(request.lora_key, result.lora_path)
    except (asyncio.CancelledError, JobCancelled):
        await asyncio.shield(report_stop(ctx, JobKind.TRAIN, request.user_key))
        raise
    except Exception as error:
        await report_failure(ctx, JobKind.TRAIN, request.user_key, error, shown=(UserInputError,))
        raise
    trained = Trained(
        user_key=request.user_key,
        job_id=job_id,
        lora_key=request.lora_key,
        seconds=round(result.seconds, 2),
        final_loss=result.losses[-1],
    )
    await state.events.publish(trained)
    return {"lora_key": trained.lora_key, "seconds": trained.seconds, "final_loss": trained.final_loss}


def training_config(request: TrainRequest, settings: Settings, plan: Any) -> TrainingConfig:
    """The recipe for one request: the settings' knobs, the GPU's plan, and the user's subject in the caption and
    the prior-preservation class prompt."""
    from pipeline.diffusion.training.config import TrainingConfig

    return TrainingConfig(
        rank=settings.lora_rank,
        steps=settings.train_steps,
        learning_rate=settings.learning_rate,
        seed=request.seed,
        batch_size=plan.batch_size,
        gradient_checkpointing=plan.gradient_checkpointing,
        prompt=request.subject.caption,
        class_prompt=request.subject.class_prompt,
    )
