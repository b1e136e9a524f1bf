"""The training recipe's parts: cached latents, Min-SNR weighting, aspect buckets, face-centred crops, text encoders."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image, ImageOps
from safetensors import safe_open

from pipeline.diffusion.families import Family
from pipeline.diffusion.generation import headshot_size
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.dataset import crop_to, decode_for_training
from pipeline.diffusion.training.loop import _encode_prompt, encode_training_set, train_lora
from pipeline.diffusion.training.loss import denoising_loss
from pipeline.diffusion.training.memory_plan import MemoryPlan, memory_plan
from tests.pipeline.conftest import TRAIN_CONFIG


def batch_loss(pipe: Any, latents: torch.Tensor, time_ids: torch.Tensor, min_snr_gamma: float | None) -> float:
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        embeds, pooled = _encode_prompt(pipe, TRAIN_CONFIG.prompt)
        loss = denoising_loss(
            pipe.unet.forward,
            scheduler,
            latents,
            noise,
            torch.tensor([40, 700]),
            (embeds, pooled, time_ids),
            dtype=pipe.unet.dtype,
            min_snr_gamma=min_snr_gamma,
        )
    return float(loss)


def test_cached_latents_give_the_same_loss_as_encoding_each_step(pipe: Any, selfie_images: list[Image.Image]) -> None:
    training_set = encode_training_set(pipe, selfie_images[:2])
    (bucket,) = training_set.buckets
    assert bucket.count == 4 and bucket.size == (64, 64)  # two images and their mirror images, the model's size
    # Image 0 and image 1's mirror image, drawn from the cache ...
    cached = bucket.sample(torch.tensor([0, 3]), torch.Generator().manual_seed(5))
    # ... and encoded afresh, as a trainer without a cache would every step.
    crops = [crop_to(selfie_images[0], bucket.size), ImageOps.mirror(crop_to(selfie_images[1], bucket.size))]
    pixels = torch.from_numpy(np.stack([np.asarray(crop, dtype=np.float32) / 127.5 - 1 for crop in crops]))
    with torch.no_grad():
        distribution = pipe.vae.encode(pixels.permute(0, 3, 1, 2)).latent_dist
    fresh = distribution.sample(generator=torch.Generator().manual_seed(5)) * pipe.vae.config.scaling_factor

    assert torch.allclose(cached, fresh, atol=1e-5)
    weighted = batch_loss(pipe, cached, bucket.time_ids, 5.0)
    assert abs(weighted - batch_loss(pipe, fresh, bucket.time_ids, 5.0)) < 1e-5
    # Min-SNR down-weights the nearly clean timestep (t=40, SNR far above 5), so the weighted loss is smaller.
    assert weighted < batch_loss(pipe, cached, bucket.time_ids, None)


def test_non_square_selfies_train_in_aspect_buckets(
    pipe: Any, selfie_images: list[Image.Image], tmp_path: Path
) -> None:
    portrait = [image.crop((0, 0, image.width * 3 // 4, image.height)) for image in selfie_images[:2]]
    landscape = [image.crop((0, 0, image.width, image.height * 4 // 5)) for image in selfie_images[2:4]]
    mixed = [*portrait, *landscape, selfie_images[4]]

    training_set = encode_training_set(pipe, mixed)
    sizes = {bucket.size: bucket.count for bucket in training_set.buckets}
    assert sizes == {headshot_size(pipe, (3, 4)): 4, headshot_size(pipe, (5, 4)): 4, (64, 64): 2}
    portrait_bucket = next(bucket for bucket in training_set.buckets if bucket.size == headshot_size(pipe, (3, 4)))
    width, height = portrait_bucket.size
    assert portrait_bucket.time_ids.tolist() == [[height, width, 0, 0, height, width]]
    assert tuple(portrait_bucket.mean.shape[2:]) == (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)

    config = TrainingConfig(rank=4, steps=24, learning_rate=5e-3, seed=4)
    result = train_lora(pipe, mixed, config, tmp_path)
    assert result.lora_path.is_file() and len(result.losses) == 6
    assert all(np.isfinite(result.losses))


def test_phone_photos_decode_only_as_large_as_their_bucket_needs_and_encode_as_a_full_decode_does(
    pipe: Any, astronaut: Image.Image
) -> None:
    portrait = headshot_size(pipe, (3, 4))
    # A phone-sized portrait JPEG (its bucket's crop fits about six times over) and the same photo as a PNG, which
    # Pillow can only decode whole.
    photo = astronaut.resize((portrait[0] * 6, portrait[1] * 6), Image.Resampling.BICUBIC)
    stored = {}
    for kind in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        photo.save(buffer, format=kind, quality=95)
        stored[kind] = buffer.getvalue()

    jpeg, png = decode_for_training(pipe, [stored["JPEG"], stored["PNG"]])
    whole = Image.open(io.BytesIO(stored["JPEG"])).convert("RGB")
    assert png.size == whole.size == photo.size
    assert portrait[0] <= jpeg.width < whole.width / 2 and portrait[1] <= jpeg.height < whole.height / 2

    assert encode_training_set(pipe, [jpeg]).buckets[0].size == portrait
    # The same training picture: the decoder's scaling smooths what the crop's resize smooths anyway (0.3 of 255
    # apart on average at a real bucket's 768x1024; more at the tiny model's 56x72, where a pixel holds more detail).
    drafted, full = (np.asarray(crop_to(image, portrait), dtype=float) for image in (jpeg, whole))
    assert np.abs(drafted - full).mean() < 2.0


def test_crop_centers_keep_the_face_in_view() -> None:
    # A landscape photo whose left third is white (the "face") and the rest black.
    photo = Image.new("RGB", (300, 100), (0, 0, 0))
    photo.paste((255, 255, 255), (0, 0, 100, 100))
    centred = crop_to(photo, (32, 32))
    on_face = crop_to(photo, (32, 32), center=(1 / 6, 0.5))
    assert np.asarray(centred).mean() < 10 and np.asarray(on_face).mean() > 245


def test_text_encoder_lora_is_saved_and_loads(pipe: Any, text_encoder_trained: Any) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    with safe_open(str(text_encoder_trained.lora_path), framework="pt") as weights:
        prefixes = {key.split(".")[0] for key in weights.keys()}  # noqa: SIM118
    assert prefixes == {"unet", "text_encoder", "text_encoder_2"}
    assert all(np.isfinite(text_encoder_trained.losses))
    # Training put the text encoders back as they were ...
    for model in (pipe.text_encoder, pipe.text_encoder_2):
        assert not any(isinstance(module, BaseTunerLayer) for module in model.modules())
    # ... and loading the file changes what the prompt means to the model.
    before, _ = _encode_prompt(pipe, TRAIN_CONFIG.prompt)
    path = text_encoder_trained.lora_path
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="te-check")
    try:
        after, _ = _encode_prompt(pipe, TRAIN_CONFIG.prompt)
    finally:
        pipe.unload_lora_weights()
    assert float((after - before).abs().max()) > 1e-3


@pytest.mark.parametrize(
    ("family", "gpu_gib", "batch", "checkpointing", "graphs"),
    [
        (Family.SDXL, None, 4, False, False),
        # The sizes measured with training graphs beside rendering: an H100 80GB at batch 8, an H200 at batch 16.
        (Family.SDXL, 79.2, 8, False, True),
        (Family.SDXL, 100.0, 8, False, True),
        (Family.SDXL, 139.8, 16, False, True),
        (Family.SDXL, 48.0, 4, False, False),
        (Family.SDXL, 24.0, 4, True, False),
        # klein at 1024 px: batch 4 peaked at 83 GiB on an H200, batch 8 did not fit in its 139.
        (Family.FLUX2, None, 4, False, False),
        (Family.FLUX2, 139.0, 4, False, False),
        (Family.FLUX2, 80.0, 2, False, False),
        (Family.FLUX2, 48.0, 1, True, False),
    ],
)
def test_memory_plan_picks_the_fastest_recipe_that_fits(
    family: Family, gpu_gib: float | None, batch: int, checkpointing: bool, graphs: bool
) -> None:
    wanted = MemoryPlan(batch_size=batch, gradient_checkpointing=checkpointing, cuda_graphs=graphs)
    assert memory_plan(gpu_gib, family) == wanted


def test_training_graphs_left_unset_follow_the_plan_up_to_its_batch_and_a_setting_wins() -> None:
    from jobs.settings import Settings
    from jobs.worker.training_setup import plan_with_settings

    h200 = memory_plan(139.8, Family.SDXL)

    def plan(**fixed: Any) -> MemoryPlan:
        return plan_with_settings(h200, Settings(_env_file=None, **fixed))  # type: ignore[call-arg]

    assert plan() == h200 and h200.cuda_graphs
    assert plan(train_batch_size=12).cuda_graphs  # a smaller batch's captures take less than the measured ones
    assert not plan(train_batch_size=24).cuda_graphs  # a larger one's were never measured beside rendering
    assert plan(train_batch_size=24, train_cuda_graphs=True).cuda_graphs
    assert not plan(train_cuda_graphs=False).cuda_graphs
    # Where the plan has none (a 48 GB card), unset stays off and an explicit true is honoured.
    l40s = memory_plan(44.4, Family.SDXL)
    assert not plan_with_settings(l40s, Settings(_env_file=None)).cuda_graphs  # type: ignore[call-arg]
    assert plan_with_settings(l40s, Settings(_env_file=None, train_cuda_graphs=True)).cuda_graphs  # type: ignore[call-arg]
