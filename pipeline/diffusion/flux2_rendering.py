"""How FLUX.2 [klein] renders a style: few steps and no CFG on the distilled model, a sentence for a prompt.

The distilled klein model samples in 4 steps and ignores guidance (it was distilled with it), and the pipeline has
no negative prompt: its text encoder reads prompts as sentences, so a style's negative keywords have nowhere to go.
The base model (``is_distilled`` false) renders like a classic model, with real CFG and many steps.
"""

from __future__ import annotations

from typing import Any

from pipeline.styles import Style

__all__ = ["BASE_GUIDANCE", "BASE_STEPS", "DISTILLED_STEPS", "flux2_call_arguments", "prompt_length"]

DISTILLED_STEPS = 4  # what black-forest-labs publishes for klein 4B
BASE_STEPS = 50
BASE_GUIDANCE = 4.0  # the pipeline's own default, for the undistilled base model
PIPELINE_PROMPT_LENGTH = 512  # tokens the klein pipeline pads every prompt to


def prompt_length(pipe: Any) -> int:
    """Tokens a prompt is padded to: the pipeline's 512, or fewer where the checkpoint's tokenizer says so (the tiny
    model's does, so that a CPU is not spent on padding)."""
    return min(PIPELINE_PROMPT_LENGTH, int(pipe.tokenizer.model_max_length))


def flux2_call_arguments(pipe: Any, style: Style, steps: int | None, subject: str) -> dict[str, Any]:
    """Prompt (naming ``subject``), step count and guidance for ``pipe(...)`` on klein; ``steps`` overrides the
    model's default."""
    distilled = bool(pipe.config.is_distilled)
    return {
        "prompt": style.render_sentence(subject),
        "num_inference_steps": (DISTILLED_STEPS if distilled else BASE_STEPS) if steps is None else steps,
        # 1.0 turns CFG off, where the distilled model would only warn that it ignores the value.
        "guidance_scale": 1.0 if distilled else BASE_GUIDANCE,
        "max_sequence_length": prompt_length(pipe),
    }
