"""A worker set up with compiled training and rendering compiles at start, and never again for a user's job: a
training, headshots in a preset and a free-text style, and every action on a headshot."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch._dynamo.config
from PIL import Image

from bench.benchmark_unet import unet_call_inputs
from bot.local.samples import astronaut_photo
from jobs.settings import CompileProfile, CompileScope, Settings
from jobs.worker.model_setup import (
    RENDER_GRAPHS_MIN_GIB,
    fuses_resnet_blocks,
    lays_out_channels_last,
    prepare_model,
    renders_from_graphs,
    renders_fused_geglu,
    renders_in_float8,
    renders_subpixel_upsamplers,
    trains_subpixel_upsamplers,
    use_channels_last_exits,
)
from pipeline.diffusion.acceleration import gpu_layout
from pipeline.diffusion.face_pass import face_pass
from pipeline.diffusion.families import Family
from pipeline.diffusion.float8 import Float8Linear
from pipeline.diffusion.float8_conv import Float8Conv2d
from pipeline.diffusion.generation import generate_headshots
from pipeline.diffusion.img2img import UPSCALE_STRENGTH, VARIATION_STRENGTH, image_to_image, supports_actions
from pipeline.diffusion.loading import load_base_pipeline, weight_dtypes
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import train_lora
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.styles import STYLES, custom_style
from tests.pipeline.operator_calls import OperatorCalls


def graphs() -> int:
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.fixture
def recompile_limit_fails() -> Iterator[None]:
    """Past dynamo's recompile limit a function silently runs eagerly and no new graph is counted: make that fail."""
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield


@pytest.mark.usefixtures("fresh_dynamo", "recompile_limit_fails")
# Minutes of dynamo tracing on a CPU (4-5 min alone on a slow 2-core box, 2026-12-02), more beside another test:
# past the suite's 300 s a healthy run was cut. A hang is still caught.
@pytest.mark.timeout(900)
# The default (blocks, what a GPU worker compiles, training included) and the opt-in FP8 rendering on the whole UNet,
# its training eager (the whole UNet's compiled training traces a second whole UNet with gradients: minutes of CI
# for an opt-in pair; the slot's compiled training equals a fresh adapter's in tests/pipeline/test_training_slot.py).
# The opt-in "regions" worker cost CI 342 s here on its own; its glue's one graph for every shape is tested on the
# UNet (tests/pipeline/test_acceleration.py), its start on the GPU (BENCHMARKS.md).
@pytest.mark.parametrize(
    ("float8", "scope", "compile_training"),
    [(True, "unet", False), (False, "blocks", True)],
    ids=["fp8-rendering-eager-training", "blocks"],
)
def test_a_compiled_worker_compiles_at_start_and_never_for_a_user(
    selfie_dir: Path,
    tmp_path: Path,
    float8: bool,
    scope: CompileScope,
    compile_training: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # As a worker finds it: importing torch._dynamo wrote inductor's default folder there.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    # "eager": dynamo's tracing and guards (what decides a recompile) without inductor's codegen on a CPU.
    settings = Settings(
        model="tiny",
        data_dir=tmp_path / "data",
        lora_rank=4,
        headshots_per_request=2,
        compile_unet=True,
        compile_training=compile_training,
        compile_backend="eager",
        render_float8=float8,
        render_float8_convs=float8,
        render_fused_geglu=float8,
        compile_scope=scope,
        # bf16 as on a GPU worker, where a cast of a shared component recompiles (diffusers' from_pipe made one);
        # the FP8 case keeps the tiny model's float32.
        dtype=None if float8 else "bfloat16",
        # One shape: each scope here compiles each shape apart, so a second adds minutes and no path of its own.
        warm_aspects="profile",
    )
    before = graphs()
    model = prepare_model(settings)
    started = graphs()
    assert started > before and model.lora_slot is not None
    assert (model.training_slot is not None) == compile_training
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(settings.resolved_compile_cache_dir.resolve())
    fp8_layers = [module for module in model.pipe.unet.modules() if isinstance(module, Float8Linear)]
    assert bool(fp8_layers) == float8
    # And the ResNet convolutions (HEADSHOT_RENDER_FLOAT8_CONVS), inside the compiled UNet, calibrated with them.
    fp8_convs = [module for module in model.pipe.unet.modules() if isinstance(module, Float8Conv2d)]
    assert bool(fp8_convs) == float8 and all(conv.calibrated for conv in fp8_convs)
    # And the feed-forwards' entries through headshot::geglu_float8 (HEADSHOT_RENDER_FUSED_GEGLU).
    feed_forwards = [module for module in model.pipe.unet.modules() if type(module).__name__ == "FeedForward"]
    assert feed_forwards and all(("forward" in vars(ff)) == float8 for ff in feed_forwards)
    # Calibrated at start and kept beside the compiled kernels, so the next start skips it (test_float8_scales.py).
    assert bool(list(settings.resolved_compile_cache_dir.glob("float8-scales-*.json"))) == float8
    unet = model.pipe.unet
    compiled_blocks = [module for module in unet.modules() if module._compiled_call_impl is not None]
    if scope != "unet":  # the transformer blocks, every one, nothing else
        kinds = set(unet._repeated_blocks)
        assert {type(module).__name__ for module in compiled_blocks} == kinds
        assert len(compiled_blocks) == sum(type(m).__name__ in kinds for m in unet.modules())
    else:
        assert compiled_blocks == [unet]

    # A user's job as the worker's train_lora runs it, then requests as generate_headshots runs them: 2 posted from
    # 3 candidates (a batch of 3) and 2 without ranking (a batch of 2), in a preset and in a free-text style.
    pipe, plan = model.pipe, model.train_plan
    selfies = [Image.open(path).convert("RGB") for path in sorted(selfie_dir.iterdir())]
    recipe = TrainingConfig(
        rank=4, steps=8, batch_size=plan.batch_size, seed=3, gradient_checkpointing=plan.gradient_checkpointing
    )
    lora = train_lora(pipe, selfies, recipe, tmp_path / "lora", slot=model.training_slot).lora_path
    slot = model.lora_slot
    rendered = [
        generate_headshots(pipe, style, count=count, seed=1, steps=2, lora_path=lora, lora_slot=slot)
        for style, count in ((STYLES["actor"], 3), (custom_style("in a library"), 2))
    ]
    # And every action on a headshot: a variation (a batch of 2), an upscale to twice its size, the face pass.
    assert supports_actions(pipe)
    source = rendered[0][0]
    width, height = source.image.size
    for strength, count, size in ((VARIATION_STRENGTH, 2, None), (UPSCALE_STRENGTH, 1, (2 * width, 2 * height))):
        image_to_image(
            pipe, source.image, STYLES["actor"], strength=strength, count=count, seed=5, size=size, steps=2,
            lora_path=lora, lora_slot=slot,
        )  # fmt: skip
    face = astronaut_photo().resize((200, 250))
    [faced] = face_pass(
        pipe, [face], FaceAnalyzer(), STYLES["actor"], seeds=[1], lora_path=lora, lora_slot=slot, steps=2
    )
    assert faced.size == face.size
    assert graphs() == started, "a user's training, request or action compiled a new graph"
    # Every weight still in the dtype it was loaded in, but the training slot's, which trains in float32.
    loaded = torch.float32 if float8 else torch.bfloat16
    for name, kept in weight_dtypes(model.pipe).items():
        assert kept <= {loaded}, f"{name} holds {kept} after the warm-up, a training and requests"


def test_fp8_rendering_left_unset_is_on_only_for_a_compiled_sdxl_unet_on_fp8_tensor_cores(tmp_path: Path) -> None:
    compiled = CompileProfile(unet=True, training=True, scope="blocks")
    unset = Settings(model="tiny", data_dir=tmp_path)
    assert not renders_in_float8(unset, compiled, Family.SDXL, "cpu")  # no FP8 tensor cores
    assert not renders_in_float8(unset, CompileProfile(unet=False, training=False, scope="unet"), Family.SDXL, "cpu")
    assert not renders_in_float8(unset, compiled, Family.FLUX2, "cuda:0")  # built for SDXL's UNet only
    # Set, the setting decides (true is refused at start where it cannot compile: tests/test_settings_and_layers.py).
    chosen = Settings(model="tiny", data_dir=tmp_path, render_float8=True, compile_unet=True)
    assert renders_in_float8(chosen, compiled, Family.SDXL, "cpu")
    refused = Settings(model="tiny", data_dir=tmp_path, render_float8=False)
    assert not renders_in_float8(refused, compiled, Family.SDXL, "cuda:0")


def test_a_cpu_worker_left_at_the_defaults_stays_eager(tmp_path: Path, model_cache: Path) -> None:
    # A GPU worker compiles by default (Settings.compile_profile); on a CPU the same settings mean plain eager.
    settings = Settings(model="tiny", data_dir=tmp_path / "data", model_cache_dir=model_cache, device="cpu")
    model = prepare_model(settings)
    assert model.training_slot is None
    assert all(module._compiled_call_impl is None for module in model.pipe.unet.modules())


def test_a_worker_with_fused_resnet_blocks_renders_and_trains_what_the_plain_worker_does(
    tmp_path: Path, model_cache: Path, tiny_model: Any, selfie_dir: Path
) -> None:
    # HEADSHOT_RENDER_FUSED_RESNETS and HEADSHOT_TRAIN_FUSED_RESNETS: the same pictures and the same losses (float32
    # on a CPU, the same maths reordered).
    settings = Settings(
        model="tiny",
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache,
        device="cpu",
        render_fused_resnets=True,
        train_fused_resnets=True,
        # Taken, and in NCHW (a CPU worker's layout) rendering and training as diffusers does.
        render_subpixel_upsamplers=True,
        train_subpixel_upsamplers=True,
    )
    fused = prepare_model(settings)
    blocks = [module for module in fused.pipe.unet.modules() if type(module).__name__ == "ResnetBlock2D"]
    assert blocks and all("forward" in vars(block) for block in blocks)
    samplers = [module for module in fused.pipe.unet.modules() if type(module).__name__ == "Upsample2D"]
    assert samplers and all("forward" in vars(sampler) for sampler in samplers)
    style = STYLES["linkedin"]
    with OperatorCalls() as calls:
        ours = generate_headshots(fused.pipe, style, count=1, seed=3, steps=3, lora_slot=fused.lora_slot)[0].image
    # Two norms a block, at each of 3 steps (CFG's two halves in one batch).
    assert calls.operators.count(torch.ops.headshot.group_norm_silu.default) == 2 * len(blocks) * 3
    plain = generate_headshots(tiny_model.pipe, style, count=1, seed=3, steps=3, lora_slot=tiny_model.lora_slot)[
        0
    ].image
    difference = torch.tensor(list(ours.getdata())).int() - torch.tensor(list(plain.getdata())).int()
    assert int(difference.abs().max()) <= 1  # a pixel's rounding at most
    config = TrainingConfig(steps=2, batch_size=1, resolution=64, rank=4, seed=0)
    selfies = [Image.open(path).convert("RGB") for path in sorted(selfie_dir.iterdir())[:2]]
    with OperatorCalls() as calls:
        ours_trained = train_lora(fused.pipe, selfies, config, tmp_path / "a")
    assert torch.ops.headshot.group_norm_silu_backward.default in calls.operators
    plain_trained = train_lora(tiny_model.pipe, selfies, config, tmp_path / "b")
    assert ours_trained.losses == pytest.approx(plain_trained.losses, rel=1e-4)


def test_a_start_up_that_casts_a_shared_component_fails_naming_it(
    tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobs.worker.model_setup as model_setup

    def casting_warm_up(pipe: Any, *_: Any) -> float:
        # What diffusers' from_pipe did inside the warm-up's first action: the shared VAE turned float32.
        pipe.vae.to(torch.float32)
        return 0.0

    monkeypatch.setattr(model_setup, "_compile_for_serving", casting_warm_up)
    settings = Settings(
        model="tiny",
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache,
        device="cpu",
        dtype="bfloat16",
        compile_unet=True,
        compile_training=False,
        compile_backend="eager",
    )
    with pytest.raises(RuntimeError, match=r"cast vae from \['torch.bfloat16'\] to \['torch.float32'\]"):
        prepare_model(settings)


def test_rendering_replays_from_cuda_graphs_unset_only_for_a_compiled_sdxl_unet_on_a_large_gpu() -> None:
    unset = CompileProfile(unet=True, training=True, scope="blocks", cuda_graphs=None)
    h100 = 79.2  # GiB, what torch reports for an H100 80GB
    assert h100 >= RENDER_GRAPHS_MIN_GIB
    assert renders_from_graphs(unset, Family.SDXL, h100)
    assert not renders_from_graphs(unset, Family.SDXL, 44.4)  # an L40S: not measured beside training
    assert not renders_from_graphs(unset, Family.SDXL, None)  # not a GPU
    assert not renders_from_graphs(unset, Family.FLUX2, 139.8)  # built for SDXL's UNet only
    uncompiled = CompileProfile(unet=False, training=True, scope="unet", cuda_graphs=None)
    assert not renders_from_graphs(uncompiled, Family.SDXL, h100)
    # Set, the setting decides (true off a GPU is refused by the settings: tests/test_settings_and_layers.py).
    assert renders_from_graphs(
        CompileProfile(unet=True, training=True, scope="blocks", cuda_graphs=True), Family.SDXL, 44.4
    )
    assert not renders_from_graphs(CompileProfile(unet=True, training=True, scope="blocks"), Family.SDXL, h100)
    # The compiled glue is only worth its compile replayed: asked for where the graphs stay off, the start refuses.
    glue = CompileProfile(unet=True, training=True, scope="blocks", cuda_graphs=None, render_glue=True)
    assert renders_from_graphs(glue, Family.SDXL, h100)
    with pytest.raises(ValueError, match="COMPILE_RENDER_GLUE=true needs rendering replayed .* on a GPU of 44 GiB"):
        renders_from_graphs(glue, Family.SDXL, 44.4)


def test_a_channels_last_workers_transformers_leave_their_tokens_in_that_layout_rendering_and_training(
    model_cache: Path,
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    gpu_layout(pipe)  # as a CUDA worker lays it out channels-last (``use_channels_last`` does nothing on a CPU)
    inputs = unet_call_inputs(pipe, batch=2)
    transformers = sum(type(module).__name__ == "Transformer2DModel" for module in pipe.unet.modules())

    def call(gradients: bool) -> tuple[torch.Tensor, int]:
        with torch.set_grad_enabled(gradients), OperatorCalls() as calls:
            output = pipe.unet(**inputs).sample
        return output.detach(), calls.operators.count(torch.ops.aten.clone.default)

    before = {gradients: call(gradients) for gradients in (False, True)}
    use_channels_last_exits(pipe)
    for gradients, (reference, copies) in before.items():
        output, now = call(gradients)
        # diffusers' exits copied the tokens into NCHW (.contiguous); in both calls they now add them as a view.
        assert now <= copies - transformers, gradients
        torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-5)


def test_the_unet_is_channels_last_unset_where_every_norm_between_compiled_parts_takes_the_nhwc_kernels() -> None:
    def profile(scope: CompileScope, **changes: Any) -> CompileProfile:
        return replace(CompileProfile(unet=True, training=True, scope=scope, cuda_graphs=True), **changes)

    # Compiled whole or by regions, inductor fuses the norms in either layout: channels-last, as before.
    assert lays_out_channels_last(profile("unet", training=False))
    assert lays_out_channels_last(profile("regions", cuda_graphs=False))
    # By blocks the norms run between the compiled blocks: channels-last only where rendering replays them through
    # the operator and training compiles (its slot's norms are the operator's); torch's eager norms copy the layout.
    assert lays_out_channels_last(profile("blocks"))
    assert not lays_out_channels_last(profile("blocks", cuda_graphs=False))
    assert not lays_out_channels_last(profile("blocks", training=False))
    # Set, the setting decides.
    assert not lays_out_channels_last(profile("blocks", channels_last=False))
    assert not lays_out_channels_last(profile("unet", channels_last=False))
    assert lays_out_channels_last(profile("blocks", cuda_graphs=False, channels_last=True))


def test_the_resnet_blocks_fuse_unset_where_the_unet_is_channels_last_by_blocks_on_a_gpu() -> None:
    def resolved(scope: CompileScope, device: str = "cuda", **changes: Any) -> tuple[Any, Any]:
        profile = replace(CompileProfile(unet=True, training=True, scope=scope, channels_last=True), **changes)
        fused = fuses_resnet_blocks(profile, device)
        return fused.render_fused_resnets, fused.train_fused_resnets

    # Where both calls were timed: channels-last by blocks on a GPU (its graphs and compiled training resolved).
    assert resolved("blocks") == (True, True)
    assert resolved("blocks", training=False) == (True, False)  # no compiled training: its calls are not fused
    # Rendering's compiled glue (opt-in) compiles the ResNet blocks, as it was timed; training still fuses them.
    assert resolved("blocks", render_glue=True) == (False, True)
    # Not timed: NCHW, another scope (which compiles the ResNet blocks), a CPU worker.
    assert resolved("blocks", channels_last=False) == (False, False)
    assert resolved("unet") == (False, False)
    assert resolved("blocks", device="cpu") == (False, False)
    # Set, the settings decide.
    assert resolved("blocks", render_fused_resnets=False, train_fused_resnets=False) == (False, False)
    assert resolved("blocks", "cpu", render_fused_resnets=True) == (True, False)


def test_the_feed_forwards_entries_fuse_unset_where_they_were_timed(tmp_path: Path) -> None:
    def resolved(device: str = "cuda", fused: bool | None = None, **changes: Any) -> bool:
        profile = replace(CompileProfile(unet=True, training=True, scope="blocks", channels_last=True), **changes)
        return renders_fused_geglu(Settings(model="tiny", data_dir=tmp_path, render_fused_geglu=fused), profile, device)

    assert resolved()  # a GPU worker channels-last by blocks, where a request was timed through the worker
    assert not resolved("cpu") and not resolved(channels_last=False) and not resolved(scope="unet")
    assert not resolved(fused=False) and resolved("cpu", fused=True)


def test_the_samplers_go_subpixel_unset_where_the_resnet_blocks_fuse(tmp_path: Path) -> None:
    def resolved(device: str = "cuda", settings: dict[str, Any] | None = None, **changes: Any) -> tuple[bool, bool]:
        profile = replace(CompileProfile(unet=True, training=True, scope="blocks", channels_last=True), **changes)
        chosen = Settings(model="tiny", data_dir=tmp_path, **(settings or {}))
        return renders_subpixel_upsamplers(chosen, profile, device), trains_subpixel_upsamplers(chosen, profile, device)

    assert resolved() == (True, True)  # where each was timed: channels-last by blocks on a GPU
    assert resolved(render_glue=True) == (False, True)  # that glue compiles rendering's samplers
    assert resolved(training=False) == (True, False)  # no compiled training: its calls are not changed
    assert resolved(channels_last=False) == resolved("cpu") == resolved(scope="unet") == (False, False)
    off = {"render_subpixel_upsamplers": False, "train_subpixel_upsamplers": False}
    assert resolved(settings=off) == (False, False)
    assert resolved("cpu", {"render_subpixel_upsamplers": True, "train_subpixel_upsamplers": True}) == (True, True)
