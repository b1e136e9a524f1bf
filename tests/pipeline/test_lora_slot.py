"""A warm pipeline's LoRA slot: users' LoRAs swap in and out without changing its structure or leaving a trace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.diffusion.adapters import new_adapter_name, remove_adapter
from pipeline.diffusion.generation import GeneratedImage, generate_headshots
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import SLOT_ADAPTER, LoraSlot
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


@pytest.fixture(scope="module")
def slot_pipe(model_cache_dir: Path) -> Any:
    """A second tiny pipeline (a slot stays for the pipeline's life, so the shared one is kept slot-free)."""
    return load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)


@pytest.fixture(scope="module")
def slot(slot_pipe: Any) -> Iterator[LoraSlot]:
    lora_slot = LoraSlot(slot_pipe, max_rank=16, merge=False)  # the LoRA layers running: the slot's own path
    yield lora_slot
    lora_slot.clear()


def structure(model: Any) -> set[tuple[str, str]]:
    return {(name, type(module).__name__) for name, module in model.named_modules()}


def slot_weights(pipe: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in pipe.unet.named_parameters() if f".{SLOT_ADAPTER}." in name}


def render(pipe: Any, lora_path: Path | None = None, slot: LoraSlot | None = None) -> GeneratedImage:
    (image,) = generate_headshots(
        pipe, STYLES["linkedin"], count=1, seed=100, steps=RENDER_STEPS, lora_path=lora_path, lora_slot=slot
    )
    return image


def test_swapping_users_matches_fresh_loads_and_keeps_the_structure(
    pipe: Any, slot_pipe: Any, slot: LoraSlot, trained: Any, second_lora: Any
) -> None:
    first, second = trained.lora_path, second_lora.lora_path  # rank 8 and rank 4, both padded to the slot's 16
    fresh = {first: render(pipe, first), second: render(pipe, second)}
    shape = structure(slot_pipe.unet)

    for path in (first, second, first):
        swapped = render(slot_pipe, path, slot)
        assert difference(swapped.image, fresh[path].image) < 0.5, path
        assert structure(slot_pipe.unet) == shape  # weights copied, no layer added or removed
    assert difference(fresh[first].image, fresh[second].image) > 1.0  # the two users really differ


def test_clearing_leaves_no_user_weights_and_renders_the_base(
    slot_pipe: Any, slot: LoraSlot, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    seconds = slot.swap_in(trained.lora_path)
    assert slot.active == trained.lora_path and seconds >= 0
    assert any(bool(weight.any()) for weight in slot_weights(slot_pipe).values())
    slot.clear()
    assert slot.active is None
    assert all(not weight.any() for weight in slot_weights(slot_pipe).values())
    # The base picture (up to one rounding step in a pixel: zero LoRA layers still add their 0.0 to each output).
    assert difference(render(slot_pipe).image, base_headshots[0].image) < 0.01


def test_a_text_encoder_lora_swaps_in_and_out(
    slot_pipe: Any, slot: LoraSlot, pipe: Any, text_encoder_trained: Any
) -> None:
    path = text_encoder_trained.lora_path
    expected = render(pipe, path)
    assert difference(render(slot_pipe, path, slot).image, expected.image) < 0.5
    # Its text-encoder part is an ordinary adapter for the call and gone afterwards.
    assert not getattr(slot_pipe.text_encoder, "peft_config", None)


def test_training_on_a_slotted_pipeline_leaves_the_slot_as_it_was(
    slot_pipe: Any, slot: LoraSlot, selfie_images: list[Any], tmp_path: Path
) -> None:
    weights, shape = slot_weights(slot_pipe), structure(slot_pipe.unet)
    result = train_lora(slot_pipe, selfie_images[:2], TrainingConfig(rank=4, steps=8, seed=1), tmp_path)
    assert result.lora_path.is_file()
    assert slot_pipe.unet.active_adapters() == [SLOT_ADAPTER]
    assert list(slot_pipe.unet.peft_config) == [SLOT_ADAPTER]
    assert structure(slot_pipe.unet) == shape
    after = slot_weights(slot_pipe)
    assert all(torch.equal(after[name], weight) for name, weight in weights.items())
    assert not any(parameter.requires_grad for parameter in slot_pipe.unet.parameters())


def test_a_lora_above_the_slots_rank_is_refused(slot_pipe: Any, trained: Any, model_cache_dir: Path) -> None:
    small = LoraSlot(load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir), max_rank=4, merge=False)
    with pytest.raises(ValueError, match="rank 8, above the slot's 4"):
        small.swap_in(trained.lora_path)
    with pytest.raises(ValueError, match="without LoRA adapters"):
        LoraSlot(slot_pipe)


@pytest.fixture(scope="module")
def merging_slot(model_cache_dir: Path) -> Iterator[LoraSlot]:
    """A slot that folds each LoRA into the base weights, on a pipeline of its own."""
    lora_slot = LoraSlot(load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir), max_rank=16)
    yield lora_slot
    lora_slot.clear()


def base_weights(pipe: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in pipe.unet.named_parameters() if f".{SLOT_ADAPTER}." not in name}


def test_a_merged_lora_renders_as_the_adapter_does_and_clearing_restores_the_base_bit_for_bit(
    pipe: Any, merging_slot: LoraSlot, trained: Any, second_lora: Any
) -> None:
    merged_pipe = merging_slot.pipe
    before, shape = base_weights(merged_pipe), structure(merged_pipe.unet)
    first, second = trained.lora_path, second_lora.lora_path

    merging_slot.swap_in(second)  # then straight to another user, without a clear between
    for path in (first, second, first):
        merging_slot.swap_in(path)
        assert merging_slot.merged
        # The user's LoRA is in the base weights now, and the slot's LoRA layers are skipped by peft's forward.
        assert any(not torch.equal(weight, before[name]) for name, weight in base_weights(merged_pipe).items())
        (image,) = generate_headshots(merged_pipe, STYLES["linkedin"], count=1, seed=100, steps=RENDER_STEPS)
        assert difference(image.image, render(pipe, path).image) < 0.5, path
        merging_slot.clear()
        assert not merging_slot.merged
        after = base_weights(merged_pipe)
        assert all(torch.equal(after[name], weight) for name, weight in before.items()), "base not restored exactly"
        assert structure(merged_pipe.unet) == shape


def test_generation_through_a_merging_slot_leaves_the_base_as_it_was(
    merging_slot: LoraSlot, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    merged_pipe = merging_slot.pipe
    render(merged_pipe, trained.lora_path, merging_slot)
    assert merging_slot.active is None and not merging_slot.merged
    assert difference(render(merged_pipe).image, base_headshots[0].image) < 0.01


def scaled_lora(slot: LoraSlot, folder: Path, *, rank: int, alpha: float, use_dora: bool = False) -> Path:
    """A random rank-``rank`` LoRA on the slot's layers whose metadata scales it by ``alpha / rank``."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig

    generator = torch.Generator().manual_seed(rank)
    layers = {}
    for name, layer in slot._layers.items():
        base = layer.base_layer
        layers[f"{name}.lora_A.weight"] = torch.randn(rank, base.in_features, generator=generator) * 0.05
        layers[f"{name}.lora_B.weight"] = torch.randn(base.out_features, rank, generator=generator) * 0.05
    config = LoraConfig(r=rank, lora_alpha=alpha, use_dora=use_dora, target_modules=list(slot.target_modules))
    StableDiffusionXLPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, unet_lora_adapter_metadata=config.to_dict(), weight_name="scaled.safetensors"
    )
    return folder / "scaled.safetensors"


def test_a_merge_gives_peft_s_own_weights_for_every_layout_diffusers_loads(
    pipe: Any, merging_slot: LoraSlot, trained: Any, tmp_path: Path
) -> None:
    """The merging slot reads a file's factors and scales itself; each must give W0 + the delta peft computes for
    the same file loaded as an ordinary adapter."""
    from pipeline.lora_export import to_kohya

    kohya = tmp_path / "kohya.safetensors"
    kohya.write_bytes(to_kohya(trained.lora_path.read_bytes()))  # per-layer alphas, float16
    layouts = {
        "training's file (diffusers layout)": trained.lora_path,
        "its kohya export": kohya,
        "peft layout, rank 4 below the slot's, alpha twice the rank": scaled_lora(
            merging_slot, tmp_path, rank=4, alpha=8
        ),
    }
    for layout, path in layouts.items():
        adapter = new_adapter_name("expected")
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
        try:
            merging_slot.swap_in(path)
            for name, layer in merging_slot._layers.items():
                theirs = pipe.unet.get_submodule(name)
                expected = theirs.base_layer.weight + theirs.get_delta_weight(adapter)
                torch.testing.assert_close(layer.base_layer.weight, expected, rtol=1e-5, atol=1e-6, msg=layout)
        finally:
            merging_slot.clear()
            remove_adapter(pipe, adapter)


def test_a_lora_the_slot_cannot_merge_is_refused_by_name_and_leaves_the_base(
    merging_slot: LoraSlot, tmp_path: Path
) -> None:
    before = base_weights(merging_slot.pipe)
    dora = scaled_lora(merging_slot, tmp_path, rank=4, alpha=4, use_dora=True)
    with pytest.raises(ValueError, match="'scaled.safetensors' uses DoRA"):
        merging_slot.swap_in(dora)
    assert merging_slot.active is None and not merging_slot.merged
    after = base_weights(merging_slot.pipe)
    assert all(torch.equal(after[name], weight) for name, weight in before.items())
