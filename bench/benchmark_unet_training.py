"""``python -m bench.benchmark_unet_training``: one UNet training call, layout against layout and scope against scope.

A LoRA training step's cost is the frozen UNet's forward and backward (backward to the activations and the LoRA
weights only, the base frozen). This times that call alone, at the training batch on square 1024 px latents, with a
rank-16 float32 LoRA on the attention projections as the worker's ``TrainingSlot`` attaches it, in one process:
eager (the baseline), then each way named in ``--modes`` (``MODES``), each compiled from scratch (dynamo reset):

- ``blocks``: the transformer blocks compiled, the rest eager, channels-last weights (a GPU worker's default);
- ``blocks-nchw``: the same in PyTorch's default NCHW layout;
- ``blocks-nchw-nocast``: the same without peft's float32 copy of each LoRA layer's input
  (``adapters.skip_lora_input_casts``, as a GPU worker's ``TrainingSlot`` trains);
- ``blocks-nchw-nocast-dynamic``: the same with the blocks compiled ``dynamic=True`` from their first call (every
  size symbolic: fewer graphs for a worker's warm-up shapes, if its kernels are as fast);
- ``blocks-nchw-nocast-fp8``: the same with the frozen base's transformer linears training in FP8
  (``float8.use_float8_training``: the forward and the backward to the activations; the LoRA in float32 as before),
  each input scaled by its own largest value; ``blocks-nchw-nocast-fp8-calibrated``: the same with the inputs'
  scales calibrated first (``float8_scales.calibrate_float8`` on calls at three timesteps), as a worker's rendering
  calibrates; ``blocks-nchw-nocast-fp8-static``: the inputs' and the gradients' scales calibrated
  (``float8_training.calibrate_float8_gradients`` on training calls at the same timesteps), so no cast waits for a
  reduction;
- a mode ending ``-graphs``: the mode before the suffix, its whole training call (forward, loss, backward to the
  LoRA's gradients) captured once in a CUDA graph and replayed as a worker's training slot replays its steps
  (``HEADSHOT_TRAIN_CUDA_GRAPHS``, ``capture_training_call``; a GPU only): what the call costs with no Python
  between its kernels, where the compiled call was partly host-bound (BENCHMARKS.md, 2026-12-03 seventh session);
- a mode with ``-concat`` (before any ``-graphs``): the mode compiled with inductor's pointwise concatenation off
  (``concatenated_separately``), so a ``cat`` of computed halves is computed half by half into the output instead
  of by one kernel evaluating both halves' maths, masked, for every element. The costliest fused kernel of a
  replayed training call is such a cat: GEGLU's backward (the gate's and the value's gradients), 48 ms of a 0.674 s
  call, about three times its memory traffic at the card's bandwidth (BENCHMARKS.md, 2026-12-03 eighth session);
- a mode with ``-geglu`` (before any ``-concat`` or ``-graphs``): the mode with SDXL's feed-forward gates training
  through ``headshot::geglu`` (``geglu.use_geglu_operator``, as a worker's ``TrainingSlot`` trains since), whose
  backward is one Triton kernel reading each value once instead of that masked cat; every other mode runs
  diffusers' own GEGLU, the baseline;
- a mode with ``-gn`` (right before any ``-graphs``): the mode with the UNet's group norms through
  ``headshot::group_norm`` (``group_norm.use_group_norm_operator``); every other mode runs torch's;
- ``regions-nchw-nocast-geglu-gn`` (``-graphs``, and its FP8 twin): the regions in NCHW with the norms through the
  operator, so inductor fuses the ResNets' elementwise work (42 ms of a replayed bf16 call, fifth session) while the
  norms keep the operator's kernels (channels-last regions gave that back in inductor's slower norms);
  ``regions-nocast-geglu-gn`` (``-graphs``, and its FP8 twin): the regions channels-last, as the scope lays them out,
  with the norms through the operator's NHWC kernels (no transposes around cuDNN's convolutions either);
- ``blocks-nocast-geglu-gn-graphs`` (``-fusedlora-graphs``, and ``blocks-nocast-fp8-static-geglu-gn-graphs``): the
  worker's call with the UNet channels-last, its norms through the operator's NHWC kernels: no layout conversions around
  cuDNN's convolutions (27 ms of a replayed bf16 call in NCHW, 2026-12-05), for norms about twice the NCHW kernels';
- ``blocks-norms``: the blocks and every group norm compiled (``compile_group_norms``), channels-last;
- ``blocks-norms-nchw``: the same in NCHW;
- ``regions``: the blocks and the glue around them (ResNet blocks, samplers), channels-last (slowest to compile);
  ``regions-nocast``, ``regions-nocast-fp8-static`` and their ``-graphs``: the same without peft's input casts, with
  the FP8 base, replayed: the glue's elementwise work fused where the host no longer decides the call;
  ``regions-nocast-geglu-graphs`` and ``regions-nocast-fp8-static-geglu-graphs``: those with ``headshot::geglu``,
  to set against the worker's ``blocks-nchw-nocast-geglu-graphs`` (and its FP8 twin).

A mode ending ``-fusedlora`` (before any ``-graphs``) trains the LoRA'd projections through
``headshot::lora_linear`` (``pipeline.diffusion.lora_linear``: the LoRA's product and input gradient accumulated into
the base layer's by a Triton kernel, cuBLAS's ``addmm_`` until 2026-12-05 ninth session, instead of added in passes
of their own), as a worker's ``TrainingSlot`` trains since the tenth session (so
``blocks-nchw-nocast-geglu-gn-fusedlora-graphs`` was a GPU worker's bf16 training call until the nineteenth session,
``blocks-nocast-geglu-gn-fusedlora-fusedtokens-graphs`` since, below); every other mode trains
through peft's forward. ``regions-nchw-nocast-geglu-gn-fusedlora-graphs`` puts it with the NCHW regions (bf16 only:
FP8 base layers are not ``nn.Linear``, so peft's forward runs there).
A mode ending ``-fusedresnets`` (before any ``-graphs``) trains through the ResNet blocks of
``pipeline.diffusion.resnet_glue`` (``HEADSHOT_TRAIN_FUSED_RESNETS``): each norm, its SiLU and the time embedding's
add in ``headshot::group_norm_silu``, whose backward recomputes the SiLU's input instead of keeping it; so
``blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-graphs`` is a GPU worker's bf16 training call with that setting.
A mode ending ``-fusedtokens`` (before any ``-graphs``, after ``-fusedresnets``) also trains the transformers'
entries and exits through ``pipeline.diffusion.transformer_glue``'s token operators (channels-last, as in
``blocks-nocast-geglu-gn-fusedlora-fusedtokens-graphs``, the exits without diffusers' copy into NCHW; with
``-fusedresnets`` before it, the ResNet blocks through the NHWC kernels). ``-biasedresnets`` in its place fuses the
blocks with their convolutions' biases left in torch's own passes (what ``resnet_glue``'s bias folds save). One with
``-subpixel`` before those trains through the up-block samplers as sub-pixel convolutions (``upsample_glue``).
A mode ending ``-nolora`` (launched from Python only) runs the same call with the LoRA switched off, its backward
reaching the input latents instead: set against the mode without it, its kernel time (``--profile``) is what the
LoRA's own work costs a call (its products, scalings and the adds into the base layers' outputs and gradients).

``--aspect W:H`` times calls at that aspect's bucket size instead of the square (a phone's portrait selfies train in
the 3:4 bucket); ``--after W:H`` makes each mode's first call at that other aspect, as a worker's training warm-up
compiles the square bucket first, so the timed call runs the graphs compiled second (torch's default then marks the
token count dynamic): the graphs every other bucket's users train on.

Each mode records its first call (the compile), the median call, its peak memory, the gradient's relative difference
from eager's, and with ``--profile`` its kernels by kind over 3 calls ("layout conversions" are the copies eager ops
make to change layout). ``--cudnn-autotune on`` times every call with cuDNN's autotuner (off in a worker): the first
call then shows what the autotuner costs a new shape, the others what it buys.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.benchmark_float8 import CALIBRATION_TIMESTEPS
from bench.benchmark_unet import _layout, _uncompile, unet_call_inputs
from bench.compile_mode import COMPILE_MODES, compile_mode
from bench.measure import (
    add_cudnn_autotune_switch,
    benchmark_pipeline,
    describe_run,
    list_recorder,
    use_cudnn_autotune,
)
from bench.training_call import training_call, training_call_seconds, training_profile

__all__ = ["MODES", "compile_group_norms", "concatenated_separately", "main"]

MODES = (
    "blocks",
    "blocks-nchw",
    "blocks-nchw-nocast",
    "blocks-nchw-nocast-dynamic",
    "blocks-nchw-nocast-fp8",
    "blocks-nchw-nocast-fp8-calibrated",
    "blocks-nchw-nocast-fp8-static",
    "blocks-nchw-nocast-graphs",
    "blocks-nchw-nocast-fp8-calibrated-graphs",
    "blocks-nchw-nocast-fp8-static-graphs",
    "blocks-nchw-nocast-concat",
    "blocks-nchw-nocast-concat-graphs",
    "blocks-nchw-nocast-fp8-static-concat-graphs",
    "blocks-nchw-nocast-geglu",
    "blocks-nchw-nocast-geglu-graphs",
    "blocks-nchw-nocast-fp8-static-geglu-graphs",
    "blocks-norms",
    "blocks-norms-nchw",
    "regions",
    "regions-nocast",
    "regions-nocast-fp8-static",
    "regions-nocast-graphs",
    "regions-nocast-fp8-static-graphs",
    "regions-nocast-geglu-graphs",
    "regions-nocast-fp8-static-geglu-graphs",
    "blocks-nchw-nocast-geglu-gn",
    "blocks-nchw-nocast-geglu-gn-graphs",
    "blocks-nchw-nocast-fp8-static-geglu-gn-graphs",
    "regions-nchw-nocast-geglu-gn",
    "regions-nchw-nocast-geglu-gn-graphs",
    "regions-nchw-nocast-fp8-static-geglu-gn-graphs",
    "regions-nocast-geglu-gn",
    "regions-nocast-geglu-gn-graphs",
    "regions-nocast-fp8-static-geglu-gn-graphs",
    "blocks-nchw-nocast-geglu-gn-nolora",
    "blocks-nchw-nocast-geglu-gn-fusedlora",
    "blocks-nchw-nocast-geglu-gn-fusedlora-graphs",
    "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets",
    "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-graphs",
    "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-fusedtokens",
    "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-fusedtokens-graphs",
    "regions-nchw-nocast-geglu-gn-fusedlora-graphs",
    "blocks-nocast-geglu-gn-graphs",
    "blocks-nocast-geglu-gn-fusedlora-graphs",
    "blocks-nocast-geglu-gn-fusedlora-fusedtokens-graphs",
    "blocks-nocast-geglu-gn-fusedlora-fusedresnets-fusedtokens-graphs",
    "blocks-nocast-geglu-gn-fusedlora-biasedresnets-fusedtokens-graphs",
    "blocks-nocast-geglu-gn-fusedlora-subpixel-fusedresnets-fusedtokens-graphs",
    "blocks-nocast-fp8-static-geglu-gn-graphs",
)


def compile_group_norms(unet: Any, *, backend: str = "inductor") -> int:
    """Run each ``torch.nn.GroupNorm`` of ``unet`` through one compiled group norm with dynamic shapes; return how
    many norms are new. (Mode "blocks-norms"; not a worker's: it gained 1% over NCHW alone, BENCHMARKS.md 2026-12-03.)

    Eager on CUDA, a group norm copies a channels-last input to NCHW first and its backward copies again; compiled,
    the norm reads either layout in place. torch.nn's own frames are not compiled (dynamo skips them), so each norm's
    ``forward`` calls a function of ours instead; one code object, so a handful of graphs (by grad mode, eps and
    layout) serve every norm and shape.
    """
    import torch
    import torch._dynamo.config

    from pipeline.diffusion.acceleration import REGION_RECOMPILE_LIMIT

    limit = max(torch._dynamo.config.recompile_limit, REGION_RECOMPILE_LIMIT)
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, limit)
    if backend not in _COMPILED_GROUP_NORMS:
        _COMPILED_GROUP_NORMS[backend] = torch.compile(_group_norm, fullgraph=True, dynamic=True, backend=backend)
    compiled = 0
    for module in unet.modules():
        if isinstance(module, torch.nn.GroupNorm) and "forward" not in module.__dict__:
            module.forward = functools.partial(_COMPILED_GROUP_NORMS[backend], module)  # type: ignore[method-assign]
            compiled += 1
    return compiled


_COMPILED_GROUP_NORMS: dict[str, Any] = {}  # by backend


def _group_norm(module: Any, sample: Any) -> Any:
    import torch.nn.functional as F  # noqa: N812

    return F.group_norm(sample, module.num_groups, module.weight, module.bias, module.eps)


@contextlib.contextmanager
def concatenated_separately(separately: bool) -> Iterator[None]:
    """Inside (when ``separately``), inductor lowers every ``cat`` by computing each input straight into its slice of
    the output, never as one pointwise kernel over the whole output that evaluates every input's maths, masked, for
    each element (``torch._inductor.lowering.cat``'s two ways; the scheduler may still fuse the inputs' kernels)."""
    if not separately:
        yield
        return
    import torch._inductor.config as inductor

    # torch 2.13 split the limit in two (complex inputs apart); torch 2.11, the GPU image's, has the first alone.
    limits = ("max_pointwise_cat_inputs", "max_complex_pointwise_cat_inputs")
    with inductor.patch({name: 1 for name in limits if hasattr(inductor, name)}):
        yield


def calibrate_on_timesteps(pipe: Any, inputs: dict[str, Any]) -> int:
    """Calibrate the UNet's static FP8 layers on forward calls at three timesteps of ``inputs`` (no gradients)."""
    import torch

    from pipeline.diffusion.float8_scales import calibrate_float8

    def run() -> None:
        with torch.autocast("cuda", dtype=pipe.unet.dtype, enabled=pipe.unet.device.type == "cuda"):
            for timestep in CALIBRATION_TIMESTEPS:
                pipe.unet(**{**inputs, "timestep": torch.tensor(timestep, device=pipe.unet.device)})

    return calibrate_float8(pipe.unet, run)


def calibrate_gradients_on_timesteps(pipe: Any, inputs: dict[str, Any], lora: list[Any]) -> int:
    """Calibrate the gradient scales of the UNet's FP8 training layers on training calls at three timesteps."""
    import torch

    from pipeline.diffusion.float8_training import calibrate_float8_gradients

    def run() -> None:
        for timestep in CALIBRATION_TIMESTEPS:
            training_call(pipe, {**inputs, "timestep": torch.tensor(timestep, device=pipe.unet.device)}, lora)

    return calibrate_float8_gradients(pipe.unet, run)


def _compile(pipe: Any, mode: str, backend: str) -> None:
    from pipeline.diffusion.acceleration import compile_unet_blocks, compile_unet_regions

    if mode.startswith("regions"):
        compile_unet_regions(pipe.unet, backend=backend)
        return
    compile_unet_blocks(pipe.unet, backend=backend, dynamic=True if mode.endswith("-dynamic") else None)
    if "norms" in mode:
        compile_group_norms(pipe.unet, backend=backend)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_unet_training", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--batch", type=int, default=16, help="latents a call (default: an H200 worker's plan)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {','.join(MODES)}")
    parser.add_argument("--aspect", type=_aspect, default=(1, 1), help="W:H of the timed calls (default 1:1)")
    parser.add_argument("--after", type=_aspect, help="W:H of one call each mode makes first (compiles first)")
    parser.add_argument("--profile", action="store_true", help="each variant's kernels by kind")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend ('eager' only traces: tests)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    parser.add_argument(
        "--compile-mode", choices=COMPILE_MODES, default="default", help="the compiles' mode (default: the worker's)"
    )
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)
    use_cudnn_autotune(args)
    modes = tuple(mode for mode in args.modes.split(",") if mode)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes names {', '.join(unknown)}; pick from {', '.join(MODES)}")

    import torch
    from peft import LoraConfig

    from pipeline.diffusion.acceleration import use_channels_last, use_fast_maths
    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS
    from pipeline.diffusion.loading import pick_device
    from pipeline.diffusion.training.slot import needs_gradient_on_entry

    device = pick_device()
    if device == "cpu" and any(mode.endswith("-graphs") for mode in modes):
        parser.error("--modes ending -graphs replay CUDA graphs, which need a CUDA GPU; this machine has none")
    pipe = benchmark_pipeline(args.model, device)
    use_fast_maths(pipe)
    use_channels_last(pipe)  # on a GPU, as a worker trains
    pipe.unet.requires_grad_(False)
    config = LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian", target_modules=list(UNET_ATTENTION_TARGETS))
    pipe.unet.add_adapter(config)
    lora = [param for name, param in pipe.unet.named_parameters() if "lora_" in name]
    for param in lora:
        param.data = param.data.float()
        torch.nn.init.normal_(param, std=0.01)  # B non-zero too, so the gradient reaches every layer
        param.requires_grad_(True)
    pipe.unet.train()
    # As a worker's TrainingSlot trains since the eleventh session: the first transformer's blocks share the others'
    # graphs (its input needs a gradient too).
    needs_gradient_on_entry(pipe.unet)
    inputs = unet_call_inputs(pipe, batch=args.batch, aspect=args.aspect)
    first = None if args.after is None else unet_call_inputs(pipe, batch=args.batch, aspect=args.after)
    results: dict[str, Any] = {
        **describe_run(args.model),
        "batch": args.batch,
        "aspect": ":".join(map(str, args.aspect)),
        "compiled_after": None if first is None else list(first["sample"].shape),
        "cudnn_autotune": args.cudnn_autotune,
        "compile_mode": args.compile_mode,
        "latents": list(inputs["sample"].shape),
        "unet_training": [],
    }

    record = list_recorder(results, "unet_training", args.out)

    channels_last = next(pipe.unet.parameters()).is_contiguous(memory_format=torch.channels_last)
    figures, reference, _ = training_call_seconds(pipe, inputs, lora, label="eager, channels-last")
    record(figures)
    on_cuda = pipe.unet.device.type == "cuda"
    if args.profile and on_cuda:
        record(training_profile(pipe, inputs, lora, label="eager, channels-last"))
    with compile_mode(args.compile_mode):  # the modes' compiles; eager's call above compiles nothing
        for mode in modes:
            # The last mode's graphs (held by its call) keep their private memory pool, 83 GiB at batch 16 on an H200,
            # and its gradients stay the LoRA's: the next mode ran out of memory while they lived.
            call = None
            for param in lora:
                param.grad = None
            _uncompile(pipe)
            graphed, mode_name = mode.endswith("-graphs"), mode
            mode = mode.removesuffix("-graphs")
            base_only, mode = mode.endswith("-nolora"), mode.removesuffix("-nolora")
            separately, mode = mode.endswith("-concat"), mode.removesuffix("-concat")
            mode, layout, fused_glue = _set_up(pipe, mode, channels_last)
            mode_inputs = {**inputs, "sample": inputs["sample"].contiguous(memory_format=layout)}
            figures_fp8 = _base_layers(pipe, mode, mode_inputs, lora)
            trained = lora
            if base_only:  # the LoRA off: the backward reaches the latents, through every layer as before
                pipe.unet.disable_adapters()
                mode_inputs["sample"] = mode_inputs["sample"].detach().requires_grad_(True)
                trained = [mode_inputs["sample"]]
            _compile(pipe, mode, args.backend)
            with concatenated_separately(separately):  # the first call compiles
                if first is not None:  # (its graphs first: the timed shape's then compile as a warm-up's second bucket)
                    training_call(pipe, {**first, "sample": first["sample"].contiguous(memory_format=layout)}, trained)
                figures, gradient, call = training_call_seconds(
                    pipe, mode_inputs, trained, label=mode_name, graphed=graphed
                )
            figures.update(figures_fp8)
            figures.update(fused_glue)
            # The compiled call's gradient against eager's: a compile or a layout must change only the rounding.
            if base_only:
                figures["lora"] = "off: the gradient of the input latents"
            else:
                figures["gradient_relative_difference"] = round(
                    float((gradient - reference).norm() / reference.norm()), 5
                )
            record(figures)
            if args.profile and on_cuda:
                record(training_profile(pipe, mode_inputs, trained, label=mode_name, call=call))
            if base_only:
                pipe.unet.enable_adapters()
    print(json.dumps(results), flush=True)
    return 0


def _set_up(pipe: Any, mode: str, channels_last: bool) -> tuple[str, Any, dict[str, int]]:
    """The UNet as ``mode`` (its "-graphs", "-nolora" and "-concat" taken off) trains: the operators its
    "-fusedtokens", "-fusedresnets", "-fusedlora", "-gn" and "-geglu" name, peft's input casts unless "-nocast"
    (eager has them), NCHW for "-nchw", else the worker's layout; returns the mode without the operators' suffixes,
    the layout, and how many ResNet blocks and transformers train fused."""
    import torch

    from pipeline.diffusion.geglu import use_geglu_operator
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.lora_linear import use_lora_operator
    from pipeline.diffusion.resnet_glue import TRAIN, use_fused_resnets
    from pipeline.diffusion.transformer_glue import use_fused_transformers
    from pipeline.diffusion.upsample_glue import use_subpixel_upsamplers

    fused: dict[str, int] = {}
    use_fused_transformers(pipe.unet, calls=TRAIN, enabled=False)  # the last mode's, if it fused them
    if mode.endswith("-fusedtokens"):
        fused["fused_transformers"] = use_fused_transformers(pipe.unet, calls=TRAIN)
    mode = mode.removesuffix("-fusedtokens")
    use_fused_resnets(pipe.unet, calls=TRAIN, enabled=False)
    if mode.endswith(("-fusedresnets", "-biasedresnets")):
        folds = mode.endswith("-fusedresnets")
        fused["fused_resnet_blocks"] = use_fused_resnets(pipe.unet, calls=TRAIN, fold_biases=folds)
    mode = mode.removesuffix("-fusedresnets").removesuffix("-biasedresnets")
    use_subpixel_upsamplers(pipe.unet, calls=TRAIN, enabled=False)
    if mode.endswith("-subpixel"):
        fused["subpixel_upsamplers"] = use_subpixel_upsamplers(pipe.unet, calls=TRAIN)
    mode = mode.removesuffix("-subpixel")
    use_lora_operator(pipe.unet, enabled=mode.endswith("-fusedlora"))
    mode = mode.removesuffix("-fusedlora")
    use_group_norm_operator(pipe.unet, enabled=mode.endswith("-gn"))
    mode = mode.removesuffix("-gn")
    use_geglu_operator(pipe.unet, enabled=mode.endswith("-geglu"))
    mode = mode.removesuffix("-geglu")
    for module in pipe.unet.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = "-nocast" not in mode
    layout = torch.contiguous_format if "-nchw" in mode else _layout(channels_last)
    pipe.unet.to(memory_format=layout)
    return mode, layout, fused


def _base_layers(pipe: Any, mode: str, inputs: dict[str, Any], lora: list[Any]) -> dict[str, Any]:
    """The frozen base's linears as ``mode`` trains them: fresh FP8 layers for "-fp8" modes (their input scales
    calibrated for "-calibrated" and "-static", their gradient scales too for "-static"), bf16 for the others; returns
    the FP8 figures to record."""
    from bench.float8_layers import use_bf16_linears
    from pipeline.diffusion.float8 import use_float8_linears
    from pipeline.diffusion.float8_training import use_float8_training

    use_bf16_linears(pipe.unet)  # FP8 modes start from fresh, uncalibrated layers
    if "-fp8" not in mode:
        return {}
    figures = {"fp8_layers": use_float8_linears(pipe.unet, scaling="static")}
    figures["fp8_training_layers"] = use_float8_training(pipe.unet)
    if mode.endswith(("-calibrated", "-static")):
        figures["calibrated"] = calibrate_on_timesteps(pipe, inputs)
    if mode.endswith("-static"):
        figures["gradients_calibrated"] = calibrate_gradients_on_timesteps(pipe, inputs, lora)
    return figures


def _aspect(text: str) -> tuple[int, int]:
    width, _, height = text.partition(":")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not an aspect W:H of two positive whole numbers, e.g. 3:4")
    return int(width), int(height)


if __name__ == "__main__":
    raise SystemExit(main())
