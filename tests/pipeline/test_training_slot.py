"""A worker's persistent training LoRA: same result as a fresh adapter, nothing left behind.

That it compiles once, at a worker's start, for every user's job and request, is tested on the worker as it sets
itself up, for each compile scope (tests/jobs/test_model_setup.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from safetensors.torch import load_file

from pipeline.diffusion.group_norm import OneOperatorGroupNorm
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_linear import OneOperatorLoraLinear
from pipeline.diffusion.lora_slot import SLOT_ADAPTER, LoraSlot
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.diffusion.training.slot import TRAINING_ADAPTER, TrainingSlot

RECIPE = TrainingConfig(rank=4, steps=8, batch_size=2, seed=1)


def worker_pipeline(model_cache_dir: Path, scope: str = "unet") -> tuple[Any, LoraSlot, TrainingSlot]:
    """A tiny pipeline set up as the worker sets one up: the rendering slot first, then the training slot, compiled
    by ``scope`` with the "eager" backend: dynamo's tracing and guards (what decides a recompile) without inductor's
    codegen."""
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    lora_slot = LoraSlot(pipe, max_rank=16)
    return pipe, lora_slot, TrainingSlot(pipe, rank=RECIPE.rank, compile_backend="eager", compile_scope=scope)


def assert_trained_alike(slotted: Any, fresh: Any) -> None:
    """The same losses and LoRA weights from a slot's job as from a fresh adapter's (``TrainingResult`` each)."""
    assert slotted.losses == pytest.approx(fresh.losses, rel=1e-4)
    expected, got = load_file(fresh.lora_path), load_file(slotted.lora_path)
    assert got.keys() == expected.keys()
    assert all(torch.allclose(got[key], expected[key], atol=1e-5) for key in expected)


def slot_weights(pipe: Any) -> list[torch.Tensor]:
    return [param for name, param in pipe.unet.named_parameters() if f".{TRAINING_ADAPTER}." in name]


@pytest.mark.usefixtures("fresh_dynamo")
def test_training_in_the_slot_equals_a_fresh_adapter_and_leaves_nothing_behind(
    pipe: Any, model_cache_dir: Path, selfie_images: list[Any], tmp_path: Path
) -> None:
    fresh = train_lora(pipe, selfie_images[:2], RECIPE, tmp_path / "fresh")
    slotted_pipe, _, slot = worker_pipeline(model_cache_dir)
    # The slot trains through the project's operators (the fresh adapter through diffusers' and torch's maths).
    norms = [module for module in slotted_pipe.unet.modules() if isinstance(module, torch.nn.GroupNorm)]
    assert norms and all(isinstance(module, OneOperatorGroupNorm) for module in norms)
    projections = [module for module in slotted_pipe.unet.modules() if isinstance(module, LoraLinear)]
    assert projections and all(isinstance(module, OneOperatorLoraLinear) for module in projections)

    for job in ("first", "second"):  # the second user starts from the same fresh weights, not the first's
        slotted = train_lora(slotted_pipe, selfie_images[:2], RECIPE, tmp_path / job, slot=slot)
        assert_trained_alike(slotted, fresh)
        # Between jobs: zero, frozen, inactive; the rendering slot is the active adapter again.
        assert all(not weight.any() and not weight.requires_grad for weight in slot_weights(slotted_pipe))
        assert slotted_pipe.unet.active_adapters() == [SLOT_ADAPTER]


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_recipe_the_slot_cannot_train_is_refused_by_name(
    model_cache_dir: Path, selfie_images: list[Any], tmp_path: Path
) -> None:
    pipe, _, slot = worker_pipeline(model_cache_dir)
    with pytest.raises(ValueError, match="rank is 8, but this worker's TrainingSlot has rank 4"):
        train_lora(pipe, selfie_images[:2], TrainingConfig(rank=8, steps=2), tmp_path, slot=slot)
    with pytest.raises(ValueError, match="UNet only"):
        with_text_encoders = TrainingConfig(rank=4, steps=2, text_encoder_lora=True)
        train_lora(pipe, selfie_images[:2], with_text_encoders, tmp_path, slot=slot)
    with pytest.raises(ValueError, match="create the pipeline's LoraSlot first"):
        TrainingSlot(load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir), rank=4)
    refused = r"compile_scope must be one of \('unet', 'blocks', 'regions'\), but is 'layers'"
    with pytest.raises(ValueError, match=refused):
        TrainingSlot(pipe, rank=4, compile_scope="layers")


def test_a_float32_lora_under_autocast_needs_no_input_cast(model_cache_dir: Path) -> None:
    """Skipping peft's float32 copy of a LoRA layer's input (as a GPU worker trains) gives the same loss gradient to
    the bit: autocast casts the input back to bfloat16 for the product either way, and bf16 -> fp32 -> bf16 is exact.
    CPU autocast stands in for CUDA's, the same casts on the real tiny UNet."""
    from peft import LoraConfig

    from bench.benchmark_unet import unet_call_inputs
    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS, skip_lora_input_casts

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet = pipe.unet.to(torch.bfloat16).requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(UNET_ATTENTION_TARGETS)), adapter_name="t")
    lora = [param for name, param in unet.named_parameters() if ".t." in name]
    torch.manual_seed(0)
    for param in lora:
        param.data = torch.randn_like(param, dtype=torch.float32) * 0.1  # B non-zero: every layer's path counts
        param.requires_grad_(True)
    inputs = unet_call_inputs(pipe, batch=2)

    def gradients() -> tuple[torch.Tensor, list[torch.Tensor]]:
        for param in lora:
            param.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = unet(**inputs).sample
        out.float().pow(2).mean().backward()
        return out.detach(), [param.grad.clone() for param in lora if param.grad is not None]

    cast_out, cast_grads = gradients()
    assert skip_lora_input_casts(unet, "t") == len(lora) // 2  # one A and one B a layer
    out, grads = gradients()
    assert torch.equal(out, cast_out)
    assert len(grads) == len(lora) and all(map(torch.equal, grads, cast_grads))


@pytest.mark.usefixtures("fresh_dynamo")
def test_every_transformer_block_trains_through_one_graph_and_the_lora_as_a_fresh_adapters(
    pipe: Any, model_cache_dir: Path, selfie_images: list[Any], tmp_path: Path
) -> None:
    from tests.pipeline.test_acceleration import graphs

    fresh = train_lora(pipe, selfie_images[:2], RECIPE, tmp_path / "fresh")
    # The worker's scope: the blocks compiled, the glue between them eager.
    blocks_pipe, _, slot = worker_pipeline(model_cache_dir, "blocks")
    before = graphs()
    slotted = train_lora(blocks_pipe, selfie_images[:2], RECIPE, tmp_path / "blocks", slot=slot)
    # One graph for the tiny model's one width of blocks: the first block's input, which comes from frozen layers only,
    # needs a gradient as the others' do (needs_gradient_on_entry), instead of a graph traced for it alone (2 before).
    assert graphs() - before == 1
    # The gradient that starts there is a dead end: the LoRA trains as a fresh adapter does.
    assert_trained_alike(slotted, fresh)


# Two pictures of the astronaut's face in the 3:4 bucket, and two squares.
PORTRAIT_CROPS = ((60, 0, 300, 320), (90, 20, 300, 300))
SQUARE_CROPS = ((60, 0, 380, 320), (90, 20, 370, 300))
SHORT_RECIPE = TrainingConfig(rank=RECIPE.rank, steps=2, batch_size=2, seed=1)


@pytest.mark.usefixtures("fresh_dynamo")
def test_the_blocks_compile_once_for_every_size_rendering_and_once_for_training(
    pipe: Any, model_cache_dir: Path, astronaut: Any, tmp_path: Path
) -> None:
    from tests.pipeline.test_acceleration import graphs

    blocks_pipe, _, slot = worker_pipeline(model_cache_dir, "blocks")
    # The token count is a size from each graph's first call on (dynamic_token_count). Rendering, with gradients off,
    # traces one graph: a portrait and a twice-as-large square render through it (2 graphs without the mark), and so
    # do two portraits, a CFG batch of 4 after the first 2 (rendering's batch is marked too: 2 graphs without).
    before = graphs()
    for width, height, count in ((64, 80, 1), (128, 128, 1), (64, 80, 2)):
        blocks_pipe(
            "a portrait", width=width, height=height, num_inference_steps=1, output_type="latent",
            num_images_per_prompt=count,
        )  # fmt: skip
    assert graphs() == before + 1
    # Training traces one more, which the square bucket's tokens share (2 without the mark: a worker's second
    # compile of every block graph).
    portraits = [astronaut.crop(box) for box in PORTRAIT_CROPS]
    squares = [astronaut.crop(box) for box in SQUARE_CROPS]
    train_lora(blocks_pipe, portraits, SHORT_RECIPE, tmp_path / "portraits", slot=slot)
    slotted = train_lora(blocks_pipe, squares, SHORT_RECIPE, tmp_path / "squares", slot=slot)
    assert graphs() == before + 2
    # Through the graph traced for the portraits, the squares' LoRA trains as a fresh adapter's does.
    assert_trained_alike(slotted, train_lora(pipe, squares, SHORT_RECIPE, tmp_path / "fresh"))


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_slot_compiled_by_regions_trains_and_renders_with_the_token_count_hook_in_its_compiled_glue(
    pipe: Any, model_cache_dir: Path, astronaut: Any, tmp_path: Path
) -> None:
    # Under "regions" each transformer's entry (around proj_in, where dynamic_token_count hooks) is compiled itself:
    # a mark traced there would stop the whole graph (fullgraph).
    regions_pipe, _, slot = worker_pipeline(model_cache_dir, "regions")
    squares = [astronaut.crop(box) for box in SQUARE_CROPS]
    slotted = train_lora(regions_pipe, squares, SHORT_RECIPE, tmp_path / "regions", slot=slot)
    regions_pipe("a portrait", width=64, height=80, num_inference_steps=1, output_type="latent")
    assert_trained_alike(slotted, train_lora(pipe, squares, SHORT_RECIPE, tmp_path / "fresh"))
