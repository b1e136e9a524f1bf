"""How a LoRA is fine-tuned: the recipe's knobs, checked when made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.styles import IDENTIFIER_TOKEN

__all__ = ["TrainingConfig"]


@dataclass(frozen=True)
class TrainingConfig:
    """How to fine-tune; defaults suit 10-20 selfies on SDXL. ``steps`` counts images seen, not optimizer steps."""

    rank: int = 16
    steps: int = 1000
    learning_rate: float = 1e-4
    batch_size: int = 4
    seed: int = 0
    resolution: int | None = None  # None: the model's own size (1024 on SDXL, 64 on the tiny model)
    prompt: str = f"a photo of {IDENTIFIER_TOKEN}"
    # None: the layers the model family's LoRAs train (``pipeline.diffusion.families.default_lora_targets``).
    target_modules: tuple[str, ...] | None = None
    # Min-SNR loss weighting (Hang et al. 2023), for SDXL's noise-prediction loss; None turns it off. FLUX.2 trains
    # with the plain flow-matching loss, as diffusers' klein script does.
    min_snr_gamma: float | None = 5.0
    gradient_checkpointing: bool = False
    text_encoder_lora: bool = False  # also train LoRAs on both CLIP text encoders' attention (SDXL only)
    noise_offset: float = 0.0  # SDXL only
    # Prior preservation (DreamBooth, Ruiz et al. 2022): with class images passed to train_lora, each step also
    # denoises a batch of them under the class prompt, so "a person" stays generic and only "sks" learns the face.
    class_prompt: str = "a photo of a person"
    prior_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        for field in ("rank", "steps", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{field} must be a positive integer, but is {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate must be positive, but is {self.learning_rate!r}.")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise ValueError(f"TrainingConfig.resolution must be a multiple of 8, but is {self.resolution!r}.")
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ValueError(f"TrainingConfig.min_snr_gamma must be positive or None, but is {self.min_snr_gamma!r}.")
        if not 0 <= self.noise_offset < 1:
            raise ValueError(f"TrainingConfig.noise_offset must be in [0, 1), but is {self.noise_offset!r}.")
        if not self.prior_loss_weight > 0:
            raise ValueError(f"TrainingConfig.prior_loss_weight must be positive, but is {self.prior_loss_weight!r}.")
        if not self.class_prompt.strip():
            raise ValueError("TrainingConfig.class_prompt is empty; name the class, e.g. 'a photo of a person'.")
        if not self.prompt.strip():
            raise ValueError("TrainingConfig.prompt is empty; it must name the subject, e.g. 'a photo of sks person'.")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("TrainingConfig.target_modules is empty; name at least one layer, e.g. 'to_q'.")

    @property
    def optimizer_steps(self) -> int:
        return math.ceil(self.steps / self.batch_size)
