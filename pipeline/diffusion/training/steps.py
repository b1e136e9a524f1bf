"""A training job's step: forward, loss and backward, launched from Python (``PlainSteps``) or replayed from a
worker's training slot's CUDA graphs (``GraphedSteps``, ``training.graphs``) where ``graphable`` says a step can be;
``train_lora`` steps the optimizer after either."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.dataset import TrainingSet

__all__ = ["GraphedSteps", "PlainSteps", "graphable"]


def graphable(config: TrainingConfig, prior: Any, fixed_prompt: Any, scaler: Any, autocast: Any) -> bool:
    """Whether a step can replay from a slot's CUDA graph: one batch and one fixed prompt a step (no prior term,
    no text encoders training), a half-precision model under autocast without a loss scaler, no checkpointing."""
    import torch

    half_autocast = isinstance(autocast, torch.autocast) and not scaler.is_enabled()
    return half_autocast and prior is None and fixed_prompt is not None and not config.gradient_checkpointing


class PlainSteps:
    """A job's steps launched from Python: the batch (and the prior's, if any) drawn, forward, loss, backward."""

    def __init__(
        self,
        batch_loss: Callable[..., Any],
        dtype: Any,
        config: TrainingConfig,
        prompts: tuple[Any, Any],
        prior: TrainingSet | None,
        autocast: Any,
        encode_prompt: Callable[[], Any],
    ) -> None:
        self.batch_loss, self.dtype, self.config, self.prior, self.autocast = batch_loss, dtype, config, prior, autocast
        self.fixed_prompt, self.class_prompt = prompts
        self.encode_prompt = encode_prompt

    def step(self, training_set: TrainingSet, generator: Any, device: Any, optimizer: Any, scaler: Any) -> Any:
        config, dtype = self.config, self.dtype
        with self.autocast:
            prompt = self.fixed_prompt if self.fixed_prompt is not None else self.encode_prompt()
            loss = self.batch_loss(training_set, prompt, config, generator, device, dtype)
            if self.prior is not None:
                prior_term = self.batch_loss(self.prior, self.class_prompt, config, generator, device, dtype)
                loss = loss + config.prior_loss_weight * prior_term
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        return loss


class GraphedSteps:
    """A job's steps through a slot's ``TrainingGraphs``: the batch drawn as the plain step draws it, then replayed."""

    def __init__(
        self, graphs: Any, forward: Callable[..., Any], pipe: Any, config: TrainingConfig, prompt: Any, dtype: Any
    ) -> None:
        from diffusers import DDPMScheduler

        from pipeline.diffusion.training.loss import batch_loss

        self.graphs, self.config, self.dtype = graphs, config, dtype
        self.embeds, self.pooled = prompt
        self.schedule = DDPMScheduler.from_config(pipe.scheduler.config)
        # Its tables on the GPU now: ``add_noise`` moves them there at its first call, a host copy that a capture
        # without warm-up runs before it (``TrainingGraphs.warming``) refuses.
        self.schedule.alphas_cumprod = self.schedule.alphas_cumprod.to(graphs.device)
        self.loss_of = functools.partial(batch_loss, forward, self.schedule, config, dtype)
        # The objective's numbers a captured graph holds (the rest is its inputs or the slot's weights).
        self.recipe = (config.min_snr_gamma, self.schedule.config.prediction_type, str(dtype))
        graphs.attach()

    def step(self, training_set: TrainingSet, generator: Any, device: Any, optimizer: Any, scaler: Any) -> Any:
        """(The graph zeroes the kept gradients itself, and no scaler is enabled: ``_graphable``.)"""
        from pipeline.diffusion.training.loss import draw_batch

        batch = draw_batch(self.schedule, training_set, self.config, generator, device)
        tensors = {**batch, "embeds": self.embeds, "pooled": self.pooled}
        return self.graphs.step(self.loss_of, tensors, autocast_dtype=self.dtype, recipe=self.recipe)
