"""The decoder's warm-up covers every shape a worker's start renders at: after ``warm_decoder`` on
``serving_decode_shapes``, every look, batch and action of the warm-up decodes through graphs it already made, so a
process that compiled those shapes beside the start leaves the worker nothing to compile
(tests/jobs/test_decoder_process.py runs the two processes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.diffusion.acceleration import gpu_layout
from pipeline.diffusion.decoder_compile import serving_decoder, warm_decoder
from pipeline.diffusion.group_norm import NoGradGroupNorm, use_group_norm_operator
from pipeline.diffusion.loading import load_base_pipeline, load_vae
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.serving import serving_decode_shapes, warm_for_serving
from pipeline.looks import ASPECTS
from pipeline.styles import STYLES, custom_style
from tests.pipeline.test_acceleration import graphs


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_workers_warm_up_renders_decode_only_through_the_decoder_warm_ups_graphs(model_cache_dir: Path) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    # The decoder as a GPU worker serves it (``use_channels_last`` and the norms' operator apply on CUDA only).
    gpu_layout(pipe, unet=False)
    use_group_norm_operator(pipe.vae.decoder, no_grad=True)
    slot = LoraSlot(pipe, max_rank=4)
    # A worker's default warm-up: every look at every aspect, a request's batches (6 candidates: 4, then 2).
    looks = [*STYLES.values(), custom_style("a free-text style")]
    styles = [replace(style, aspect=aspect.ratio) for style in looks for aspect in ASPECTS.values()]
    shapes = serving_decode_shapes(pipe, styles, (2, 4))
    # Non-square first (a square traced first ties height to width), the batch of 4 first; no single image (an
    # upscale, the face pass): those decode eagerly.
    assert shapes[0][0] == 4 and shapes[0][2] != shapes[0][3]
    assert {shape[0] for shape in shapes} == {2, 4} and any(shape[2] == shape[3] for shape in shapes)

    # "eager": dynamo's tracing and guards (what decides a new graph) without inductor's codegen on a CPU.
    assert warm_decoder(pipe.vae, shapes, backend="eager") == len(shapes)
    warmed = graphs()
    assert warmed > 0
    # The UNet uncompiled: every graph below would be the decoder's.
    warm_for_serving(pipe, slot, styles=styles, batch_sizes=(2, 4), compile_backend="eager")
    assert graphs() == warmed, "a warm-up render decoded a shape the decoder's warm-up had not compiled"


def test_the_vae_loaded_alone_is_the_pipelines_and_its_decoder_set_up_as_a_gpu_workers(model_cache_dir: Path) -> None:
    import torch

    pipe = load_base_pipeline("tiny", device="cpu", dtype="bfloat16", cache_dir=model_cache_dir)
    vae = load_vae("tiny", device="cpu", dtype="bfloat16", cache_dir=model_cache_dir)

    def config(model: Any) -> dict[str, Any]:
        return {key: value for key, value in dict(model.config).items() if not key.startswith("_")}

    assert type(vae) is type(pipe.vae) and config(vae) == config(pipe.vae) and not vae.training
    serving_decoder(vae)  # a CPU's: nothing changes
    assert not any(isinstance(module, NoGradGroupNorm) for module in vae.modules())
    # A GPU worker's decoder (model_setup.use_group_norm_operators, acceleration.gpu_layout) against the process's.
    use_group_norm_operator(pipe.vae.decoder, no_grad=True)
    gpu_layout(pipe, unet=False)
    serving_decoder(vae, gpu=True)
    for part in ("decoder", "post_quant_conv"):
        mine, theirs = dict(getattr(vae, part).named_modules()), dict(getattr(pipe.vae, part).named_modules())
        assert {name: type(module) for name, module in mine.items()} == {n: type(m) for n, m in theirs.items()}
    mine_params, theirs_params = dict(vae.named_parameters()), dict(pipe.vae.named_parameters())
    assert mine_params.keys() == theirs_params.keys()
    for name, param in mine_params.items():  # graphs key on each input's dtype, layout and need of a gradient
        other = theirs_params[name]
        assert (param.dtype, param.stride(), param.requires_grad) == (other.dtype, other.stride(), other.requires_grad)
        torch.testing.assert_close(param, other)  # the same checkpoint
    assert any(isinstance(module, NoGradGroupNorm) for module in vae.decoder.modules())


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_worker_waiting_for_the_decoders_process_traces_its_denoisers_graph_first_and_no_more_graphs(
    model_cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import functools
    import logging

    import torch._dynamo

    from pipeline.diffusion.acceleration import compile_regionally

    styles = [replace(STYLES["linkedin"], aspect=(4, 5)), replace(STYLES["linkedin"], aspect=(1, 1))]
    made, renders = [], []
    caplog.set_level(logging.INFO, logger="pipeline.diffusion.serving")
    for process in (False, True):
        caplog.clear()
        torch._dynamo.reset()
        pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
        slot = LoraSlot(pipe, max_rank=4)
        compile_regionally(pipe.unet, "blocks", backend="eager")  # a worker's rendering scope
        before, at_wait = graphs(), []
        waited = functools.partial(lambda seen, start: seen.append(graphs() - start), at_wait, before)
        warm_for_serving(
            pipe,
            slot,
            styles=styles,
            batch_sizes=(2, 4),
            compile_backend="eager",
            decoder_compiled=waited if process else None,
        )
        made.append(graphs() - before)
        # "warmed <what> in <s> s": the renders of a look's batch, in order
        warmed = [record.getMessage().removeprefix("warmed ") for record in caplog.records]
        renders.append([message.rsplit(" in ", 1)[0] for message in warmed if "batch" in message])
    # Waiting for a process, the worker had traced its denoiser's rendering graph before the wait (so its compile
    # overlaps with the process's); the warm-up as a whole traced what it traces without one, and rendered that
    # first look's first batch only there.
    assert at_wait == [1]
    assert made[1] == made[0]
    first = "linkedin (4, 5) batch 4"
    assert first in renders[0] and first not in renders[1]
    assert [r for r in renders[0] if r != first] == [r for r in renders[1] if r != first]
