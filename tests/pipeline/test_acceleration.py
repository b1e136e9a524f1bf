"""Inference speed-ups: safe on a CPU, and never at the cost of silently dropping a user's LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.diffusion.acceleration import gpu_layout, is_qkv_fused, optimize_for_inference, use_compile_cache
from pipeline.diffusion.generation import GeneratedImage, generate_headshots
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.styles import STYLES
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference


def graphs() -> int:
    """Graphs dynamo has compiled in this process (``fresh_dynamo`` starts each test from none)."""
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def unet_call(pipe: Any, batch: int, height: int, width: int, generator: Any) -> dict[str, Any]:
    """A CFG batch of a request at one latent size for ``pipe``'s UNet: latents, text embeddings, SDXL's size ids."""
    import torch

    unet = pipe.unet
    return {
        "sample": torch.randn(batch, unet.config.in_channels, height, width, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(batch, 77, unet.config.cross_attention_dim, generator=generator),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(batch, pipe.text_encoder_2.config.projection_dim, generator=generator),
            "time_ids": torch.tensor([[height * 8, width * 8, 0, 0, height * 8, width * 8]] * batch).float(),
        },
    }


def test_fused_projections_render_the_base_but_refuse_a_lora(
    model_cache_dir: Path, trained: Any, base_headshots: list[GeneratedImage]
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    pipe.fuse_qkv_projections()  # diffusers' own fusing, which the product never does
    assert is_qkv_fused(pipe)
    fused = generate_headshots(pipe, STYLES["linkedin"], count=1, seed=100, steps=RENDER_STEPS)
    assert difference(fused[0].image, base_headshots[0].image) < 0.5  # same maths, one matrix product
    with pytest.raises(ValueError, match="fused"):
        generate_headshots(pipe, STYLES["linkedin"], count=1, seed=1, steps=1, lora_path=trained.lora_path)


@pytest.mark.usefixtures("fresh_dynamo")
def test_optimizing_keeps_the_slots_lora_layers_unfused(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    LoraSlot(pipe, max_rank=4)
    optimize_for_inference(pipe, compile_backend="eager")
    assert not is_qkv_fused(pipe)


def test_an_unknown_compile_scope_is_refused_by_name_before_anything_compiles(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    refused = r"compile_scope must be one of \('unet', 'blocks', 'regions'\), but is 'layer'"
    with pytest.raises(ValueError, match=refused):
        optimize_for_inference(pipe, compile_scope="layer", compile_backend="eager")
    assert all(module._compiled_call_impl is None for module in pipe.unet.modules())


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_worker_compiled_for_serving_never_compiles_again_for_users_actions_or_training(
    model_cache_dir: Path, trained: Any, second_lora: Any, selfie_images: list[Any], tmp_path: Path
) -> None:

    from pipeline.diffusion.img2img import VARIATION_STRENGTH, image_to_image
    from pipeline.diffusion.serving import compile_for_serving
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora

    def serve(lora: Path, count: int) -> list[GeneratedImage]:
        return generate_headshots(pipe, style, count=count, seed=3, steps=2, lora_path=lora, lora_slot=slot)

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    # A model built from its config (the benchmarks' random SDXL) starts in training mode, where one from a
    # checkpoint (every worker's, tests/jobs/test_model_setup.py) starts in eval mode; training ends in eval mode, so
    # a graph compiled in training mode recompiled after the first job (145 s). The harder start is the one tested.
    pipe.unet.train(True)
    pipe.vae.train(True)
    # A GPU worker's layout (``use_channels_last`` applies it on CUDA only): its eager VAE encoder makes a variation's
    # start latents in its own layout, and the compiled UNet and VAE decoder guard on their input's strides.
    gpu_layout(pipe)
    slot = LoraSlot(pipe, max_rank=16)
    style = STYLES["casual"]
    before = graphs()
    # "eager": dynamo's tracing and guards (what decides a recompile) without inductor's minutes of codegen on a CPU.
    # The served style's shape and one batch size only: every other shape's graphs are its own and add a minute of
    # tracing here (the worker's own start warms them all: tests/jobs/test_model_setup.py).
    compile_for_serving(pipe, slot, styles=[style], batch_sizes={2}, compile_backend="eager")
    warmed = graphs()
    assert warmed > before  # the warm-up really compiled
    assert slot.active is None and not slot.merged

    serve(trained.lora_path, 2)
    [source, _] = serve(second_lora.lora_path, 2)
    image_to_image(
        pipe, source.image, style, strength=VARIATION_STRENGTH, count=2, seed=5, steps=2, lora_path=trained.lora_path,
        lora_slot=slot,
    )  # fmt: skip
    train_lora(pipe, selfie_images[:2], TrainingConfig(rank=4, steps=4, seed=1), tmp_path)
    serve(trained.lora_path, 2)
    assert graphs() == warmed, "a user's request, a variation or a training job compiled a new graph"


@pytest.mark.usefixtures("fresh_dynamo")
def test_the_decoder_compiles_its_regions_once_for_every_batch_and_size_and_decodes_single_images_eagerly(
    model_cache_dir: Path,
) -> None:
    import torch

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    channels = pipe.vae.config.latent_channels
    generator = torch.Generator().manual_seed(0)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pipe.vae.decode(latents, return_dict=False)[0]

    # A worker's warm-up order (non-square looks first): a 4:5 profile request, a square one in another batch, a 2:3
    # portrait one.
    batches = [(4, 20, 16), (2, 16, 16), (4, 21, 14)]
    # The actions' single images: an upscale at twice the profile size, the face pass's square.
    singles = [(1, 40, 32), (1, 32, 32)]
    latents = [torch.randn(shape[0], channels, *shape[1:], generator=generator) for shape in batches + singles]
    eager = [decode(batch) for batch in latents]
    optimize_for_inference(pipe, compile_backend="eager", compile_scope="blocks")
    before = graphs()
    for batch, expected in zip(latents[: len(batches)], eager, strict=False):
        torch.testing.assert_close(decode(batch), expected, rtol=1e-5, atol=1e-5)
    warmed = graphs()
    assert warmed > before  # one graph per block shape family (8 for SDXL's decoder)
    # Single images run the same blocks eagerly: the same pixels, no graph of their own (dynamo would specialise a
    # batch of one and compile every block again).
    for batch, expected in zip(latents[len(batches) :], eager[len(batches) :], strict=True):
        torch.testing.assert_close(decode(batch), expected, rtol=1e-5, atol=1e-5)
    assert graphs() == warmed
    # New batches and sizes find those graphs: the OOM retry's half batch, an upscale of a portrait, a square pair.
    for shape in ((3, 18, 22), (1, 42, 28), (2, 24, 24)):
        decode(torch.randn(shape[0], channels, *shape[1:], generator=generator))
    assert graphs() == warmed


@pytest.mark.usefixtures("fresh_dynamo")
def test_regions_compiled_by_inductor_compute_what_eager_does_at_two_request_shapes(model_cache_dir: Path) -> None:
    import torch

    from pipeline.diffusion.acceleration import compile_unet_regions

    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet, generator = pipe.unet, torch.Generator().manual_seed(0)

    # A profile request, then a square one of 2 images.
    shapes = [unet_call(pipe, 2, 36, 28, generator), unet_call(pipe, 4, 32, 32, generator)]
    with torch.no_grad():
        eager = [unet(**inputs).sample for inputs in shapes]
        assert compile_unet_regions(unet) > 0
        compiled = [unet(**inputs).sample for inputs in shapes]
        # The glue's graphs take any shape: a third request shape (portrait, 3 images) compiles nothing new, which
        # is what lets a "regions" worker warm one graph for every style.
        warmed = graphs()
        unet(**unet_call(pipe, 6, 40, 24, generator))
        assert graphs() == warmed
    for fast, slow in zip(compiled, eager, strict=True):
        assert float((fast - slow).norm() / slow.norm()) < 1e-4  # float32: only the order of additions differs


@pytest.mark.usefixtures("fresh_dynamo")
def test_glue_compiled_for_rendering_renders_as_eager_does_and_leaves_training_to_the_blocks(
    model_cache_dir: Path,
) -> None:
    import torch
    import torch._dynamo

    def set_up(render_glue: bool) -> tuple[Any, dict[str, Any]]:
        torch._dynamo.reset()
        pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
        unet, inputs = pipe.unet, unet_call(pipe, 2, 32, 32, torch.Generator().manual_seed(0))
        optimize_for_inference(pipe, compile_backend="eager", compile_scope="blocks", render_glue=render_glue)
        return unet, inputs

    def train(unet: Any, inputs: dict[str, Any]) -> None:  # a training step's forward and backward
        sample = inputs["sample"].clone().requires_grad_(True)
        unet(**{**inputs, "sample": sample}).sample.square().mean().backward()

    unet, inputs = set_up(render_glue=False)
    with torch.no_grad():
        eager_glue = unet(**inputs).sample  # blocks compiled, the glue eager: a worker's default render
    start = graphs()
    train(unet, inputs)
    blocks_only = graphs() - start

    unet, inputs = set_up(render_glue=True)
    start = graphs()
    train(unet, inputs)
    assert graphs() - start == blocks_only  # training ran the glue eagerly: nothing more compiled
    before = graphs()
    with torch.no_grad():
        rendered = unet(**inputs).sample
    assert graphs() > before  # the glue's graphs, for rendering
    torch.testing.assert_close(rendered, eager_glue, rtol=1e-5, atol=1e-5)
    warmed = graphs()
    train(unet, inputs)
    with torch.no_grad():
        unet(**inputs)
    assert graphs() == warmed


def test_compiled_kernels_are_kept_in_the_workers_folder_unless_inductors_own_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "named"))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    assert use_compile_cache(tmp_path / "kept") == tmp_path / "named"
    assert Path(os.environ["TRITON_CACHE_DIR"]).is_relative_to(tmp_path / "named")  # Triton's follows it
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert use_compile_cache(tmp_path / "kept") == (tmp_path / "kept").resolve()
    assert cache_dir() == str((tmp_path / "kept").resolve())  # where inductor writes its kernels now
    # The project's own Triton kernels too, from the first one compiled (before any graph of inductor's).
    assert Path(os.environ["TRITON_CACHE_DIR"]).is_relative_to((tmp_path / "kept").resolve())
    # In a worker, importing torch._dynamo has already written inductor's default folder into the variable.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert use_compile_cache(tmp_path / "worker") == (tmp_path / "worker").resolve()
    assert cache_dir() == str((tmp_path / "worker").resolve())
    assert Path(os.environ["TRITON_CACHE_DIR"]).is_relative_to((tmp_path / "worker").resolve())
    # A folder the operator named for Triton stays.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    use_compile_cache(tmp_path / "third")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton")
