"""``python -m bench.benchmark_float8``: one UNet call with its transformer linears in bf16 and in both FP8 schemes
(``pipeline.diffusion.float8``), compiled as a worker compiles it and whole, in one process.

Each variant starts from a cold dynamo (inductor's on-disk cache is whatever the machine has) at the batch of a
4-image request with CFG (8 latents at the linkedin style's size): bf16 eager (the baseline); the transformer blocks
compiled in NCHW, as a GPU worker compiles them, in bf16, FP8 with dynamic rowwise scales and FP8 with static
per-tensor scales; the whole UNet compiled in channels-last (the plain diffusers pipeline's two lines) in bf16 and
static FP8; the blocks and the glue between them (``HEADSHOT_COMPILE_SCOPE=regions``: ResNets, samplers, each
transformer's entry and exit, dynamic) in channels-last, in bf16 and static FP8; a name ending ``-graphs`` replays
its calls from CUDA graphs, as ``HEADSHOT_RENDER_CUDA_GRAPHS`` does (a GPU only); ``static-blocks-gn`` (and its
``-graphs``) renders through ``headshot::group_norm`` (``pipeline.diffusion.group_norm``), as a worker with
``HEADSHOT_RENDER_CUDA_GRAPHS`` renders, every other variant through torch's group norm, as a worker without them;
``static-blocks-cl-gn`` (and its ``-graphs``) lays the blocks' UNet out channels-last with the norms through the
operator's NHWC kernels: cuDNN's convolutions without the layout conversions NCHW costs them (7% of a replayed
call, 2026-12-05), for norms twice the NCHW kernels' time (with ``-tokens`` the transformers' exits add their tokens
to the residual without copying them into NCHW); ``static-blocks-gn-fused`` (and its ``-graphs``) renders
the ResNet blocks' norms with their SiLU and time embedding in one operator (``pipeline.diffusion.resnet_glue``),
their convolutions' biases folded into the passes around them (``-fused-biased`` leaves them to torch's own;
``-subpixel`` also renders the up-block samplers as sub-pixel convolutions, ``pipeline.diffusion.upsample_glue``;
``-fp8conv`` the ResNet blocks' 3x3 convolutions in FP8, ``pipeline.diffusion.float8_conv``, and ``-fp8convcast``
the same casting their input in a pass of its own, not in the norm before it; ``-ffgate`` the feed-forwards' entries
as one FP8 operator that gates in its product's epilogue, ``pipeline.diffusion.geglu_float8`` (``-ffgate-tma`` its
kernel loading its tiles by the tensor memory accelerator); ``-preciseacc`` the FP8
linears' products promoting their sums to float32, where a worker sums them in the tensor cores' FP8 accumulator,
``float8.FAST_ACCUMULATION``);
``static-blocks-gn-shared`` (and its ``-graphs``, also with ``-fused-tokens``, and channels-last as
``static-blocks-cl-gn-tokens-shared-graphs``) gives each attention's q, k and v one
input scale and merges their casts, so the norm before them writes one FP8 copy where it wrote three
(``pipeline.diffusion.float8_shared_input``);
``static-blocks-dynamic`` compiles the blocks ``dynamic=True`` from their first call (one graph for every size, if
as fast);
``static-blocks-eager-cast`` casts the inputs of the FP8 layers left outside the compiled blocks eagerly, in four
kernels, where a worker (and every other variant) casts them in one generated kernel (``float8.EAGER_INPUT_CAST``;
this variant was the worker's way, and "static-blocks-fused-cast" today's, before 2026-12-03's sixth session).
Static layers are calibrated on calls at three timesteps of the same inputs before compiling. Every variant's output
is set against eager bf16's (relative error of one call); ``--profile`` adds the kernels by kind of each FP8 variant
and of its bf16 twin. TF32 and cuDNN's autotuner are set as a worker sets them (``--cudnn-autotune on`` times the
calls with the autotuner).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.benchmark_unet import _uncompile, kernel_profile, unet_call_inputs, unet_call_seconds
from bench.compile_mode import COMPILE_MODES, compile_mode
from bench.measure import add_cudnn_autotune_switch, benchmark_pipeline, describe_run, list_recorder, use_cudnn_autotune

__all__ = ["VARIANTS", "main"]

# name -> (FP8 scaling or None for bf16, compile scope), in the order they run; a name ending "-dynamic" compiles the
# blocks dynamic=True from their first call, one ending "-eager-cast" casts eager layers' inputs eagerly, one ending
# "-graphs" replays its calls from a CUDA graph (pipeline.diffusion.cuda_graphs, HEADSHOT_RENDER_CUDA_GRAPHS); one with
# "-nchw" lays the regions out NCHW, one with "-cl" the blocks channels-last (the blocks are NCHW otherwise, the
# regions channels-last); "-gn" runs the norms through the operator, in either layout (channels-last through its
# NHWC kernels); "-fused" the ResNet blocks through headshot::group_norm_silu (pipeline.diffusion.resnet_glue) and
# "-tokens" the transformers' entries and exits through the token operators (pipeline.diffusion.transformer_glue);
# "-shared" one FP8 input for the layers that read one tensor (pipeline.diffusion.float8_shared_input); "-biased" keeps
# the fused blocks' convolutions' biases in torch's own passes (what resnet_glue's bias folds save); "-subpixel" the
# up-block samplers as sub-pixel convolutions (pipeline.diffusion.upsample_glue, channels-last only); "-fp8conv" the
# ResNet blocks' 3x3 convolutions in FP8 too (pipeline.diffusion.float8_conv, calibrated with the linears), their
# norms writing the FP8 input; "-fp8convcast" the same with the operator casting a bf16 input in a pass of its own;
# "-ffgate" the feed-forwards' entries through headshot::geglu_float8 (pipeline.diffusion.geglu_float8); "-preciseacc"
# the FP8 linears' products promoting their sums to float32 (float8.FAST_ACCUMULATION off; "-fastacc" was its opposite
# before fast accumulation became the default); "-tma" the gated entries' kernel loading its tiles by TMA
# (geglu_float8_kernel.TMA_LOADS), "-ptrloads" by pointers; "-int8attn" the attentions through headshot::attention_int8
# (the queries by the keys in int8, bench.attention_int8), "-fp8pv" with its second product in e4m3
# (attention_int8_kernel.PV_FLOAT8), "-prekeys" its keys rounded by a pass of their own (KEYS_INT8).
VARIANTS: dict[str, tuple[str | None, str]] = {
    "bf16-blocks": (None, "blocks"),
    "dynamic-blocks": ("dynamic", "blocks"),
    "static-blocks": ("static", "blocks"),
    "static-blocks-dynamic": ("static", "blocks"),
    "static-blocks-eager-cast": ("static", "blocks"),
    "bf16-unet": (None, "unet"),
    "static-unet": ("static", "unet"),
    "bf16-regions": (None, "regions"),
    "static-regions": ("static", "regions"),
    "static-blocks-graphs": ("static", "blocks"),
    "static-regions-graphs": ("static", "regions"),
    "static-blocks-gn": ("static", "blocks"),
    "static-blocks-gn-graphs": ("static", "blocks"),
    "static-regions-nchw-gn-graphs": ("static", "regions"),
    "static-regions-gn-graphs": ("static", "regions"),
    "static-blocks-cl-gn": ("static", "blocks"),
    "static-blocks-cl-gn-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-tokens": ("static", "blocks"),
    "static-blocks-cl-gn-tokens-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-tokens-shared-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-tokens": ("static", "blocks"),
    "static-blocks-cl-gn-fused-tokens-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-biased-tokens-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-tokens-shared-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-tma-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-preciseacc-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-preciseacc-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-int8attn-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-int8attn-fp8pv-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-int8attn-prekeys-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-ffgate-ptrloads-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-tokens-shared-fp8conv-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-tokens-shared-fp8convcast-graphs": ("static", "blocks"),
    "static-blocks-cl-gn-fused-subpixel-tokens-shared-fp8conv-graphs": ("static", "blocks"),
    "static-blocks-gn-fused": ("static", "blocks"),
    "static-blocks-gn-fused-graphs": ("static", "blocks"),
    "static-blocks-gn-fused-tokens": ("static", "blocks"),
    "static-blocks-gn-tokens-graphs": ("static", "blocks"),
    "static-blocks-gn-fused-tokens-graphs": ("static", "blocks"),
    "static-blocks-gn-shared": ("static", "blocks"),
    "static-blocks-gn-shared-graphs": ("static", "blocks"),
    "static-blocks-gn-fused-tokens-shared": ("static", "blocks"),
    "static-blocks-gn-fused-tokens-shared-graphs": ("static", "blocks"),
}
CALIBRATION_TIMESTEPS = (999, 500, 1)


def run_variants(pipe: Any, names: list[str], *, record: Any, profile: bool) -> None:
    """Time (and profile) each variant of ``names`` on ``pipe``, eager bf16 first as the baseline."""
    import torch
    import torch._inductor.config

    from pipeline.diffusion import float8
    from pipeline.diffusion.acceleration import compile_unet_blocks, compile_unet_regions
    from pipeline.diffusion.cuda_graphs import DenoiserGraphs
    from pipeline.diffusion.float8_shared_input import INDUCTOR_OPTIONS

    inputs = unet_call_inputs(pipe, batch=8)
    worker_cast = float8.EAGER_INPUT_CAST  # the module's default, as a worker runs

    def output() -> Any:
        with torch.no_grad():
            return pipe.unet(**inputs).sample.double()

    def calibrate() -> None:
        for timestep in CALIBRATION_TIMESTEPS:
            pipe.unet(**{**inputs, "timestep": torch.tensor(timestep, device=pipe.unet.device)})

    pipe.unet.to(memory_format=torch.contiguous_format)
    record(unet_call_seconds(pipe, inputs, label=f"{str(pipe.unet.dtype).removeprefix('torch.')}, eager (baseline)"))
    reference = output()
    for name in names:
        scaling, scope = VARIANTS[name]
        _uncompile(pipe)
        float8.EAGER_INPUT_CAST = "eager" if name.endswith("-eager-cast") else worker_cast
        _switches(name.split("-"))
        figures = _set_up(pipe, name, calibrate)
        if scope == "blocks":
            compile_unet_blocks(pipe.unet, dynamic=True if name.endswith("-dynamic") else None)
        elif scope == "regions":
            compile_unet_regions(pipe.unet)
        else:
            pipe.unet.compile(fullgraph=True)
        if name.endswith("-graphs"):
            DenoiserGraphs(pipe.unet)  # the first timed call compiles, then captures; _uncompile drops it
        label = f"{scaling or 'bf16'} {'FP8 ' if scaling else ''}{' '.join(name.split('-')[1:])} compiled"
        # Graphs compile at their first call: the merging pass must be set while the variant runs.
        with torch._inductor.config.patch(INDUCTOR_OPTIONS if "shared_input_groups" in figures else {}):
            figures = {**unet_call_seconds(pipe, inputs, label=label), **figures}
            figures["relative_error_vs_bf16_eager"] = round(float((output() - reference).norm() / reference.norm()), 5)
            record(figures)
            if profile:
                record(kernel_profile(pipe, inputs, label=label))
    _uncompile(pipe)
    _plain(pipe)
    float8.EAGER_INPUT_CAST = worker_cast
    _switches([])


# Each module switch a variant's name can set: (module, constant, the name part turning it on, the part turning it
# off); None where no part does.
_SWITCHES: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("pipeline.diffusion.float8", "FAST_ACCUMULATION", None, "preciseacc"),
    ("pipeline.diffusion.float8_conv", "NORM_WRITES_FLOAT8", None, "fp8convcast"),
    ("pipeline.diffusion.geglu_float8_kernel", "TMA_LOADS", "tma", "ptrloads"),
    ("bench.attention_int8_kernel", "PV_FLOAT8", "fp8pv", None),
    ("bench.attention_int8_kernel", "KEYS_INT8", "prekeys", None),
)
_DEFAULTS: dict[tuple[str, str], bool] = {}  # each switch's value in the module, as a worker runs it


def _switches(parts: list[str]) -> None:
    """Each module switch on or off where the variant's name ``parts`` say so, else as the module has it: the FP8
    linears' sums promoted ("-preciseacc"), the FP8 convolutions casting their bf16 input in a pass of their own
    ("-fp8convcast"), the gated entries' loads by TMA ("-tma") or by pointers ("-ptrloads"), the int8 attention's
    second product in e4m3 ("-fp8pv") and its keys rounded by a pass of their own ("-prekeys")."""
    for module, constant, on, off in _SWITCHES:
        named = on in parts or off in parts
        if not named and module not in sys.modules:
            continue  # never loaded (nor needing triton): nothing to set or reset
        loaded = importlib.import_module(module)
        default = _DEFAULTS.setdefault((module, constant), getattr(loaded, constant))
        setattr(loaded, constant, on in parts if named else default)


def _plain(pipe: Any) -> None:
    """Undo what any variant's ``_set_up`` did to ``pipe``'s UNet: bf16 linears, torch's norms, diffusers' glue."""
    from bench.attention_int8 import use_quantized_attention
    from bench.float8_layers import use_bf16_linears
    from pipeline.diffusion.float8_conv import use_bf16_convs
    from pipeline.diffusion.geglu_float8 import use_fused_feed_forwards
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.resnet_glue import use_fused_resnets
    from pipeline.diffusion.transformer_glue import use_fused_transformers
    from pipeline.diffusion.upsample_glue import use_subpixel_upsamplers

    use_fused_feed_forwards(pipe.unet, enabled=False)
    use_quantized_attention(pipe.unet, enabled=False)
    use_bf16_linears(pipe.unet)
    use_bf16_convs(pipe.unet)
    use_group_norm_operator(pipe.unet, enabled=False)
    use_fused_resnets(pipe.unet, enabled=False)
    use_fused_transformers(pipe.unet, enabled=False)
    use_subpixel_upsamplers(pipe.unet, enabled=False)


def _set_up(pipe: Any, name: str, calibrate: Callable[[], None]) -> dict[str, Any]:
    """``pipe``'s UNet laid out, its glue fused and its linears converted (and calibrated) as variant ``name`` says,
    from whatever the last variant left; return what was converted, by kind."""
    import torch

    from pipeline.diffusion.float8 import use_float8_linears
    from pipeline.diffusion.float8_conv import use_float8_convs
    from pipeline.diffusion.float8_scales import calibrate_float8
    from pipeline.diffusion.float8_shared_input import share_input_scales
    from pipeline.diffusion.geglu_float8 import use_fused_feed_forwards
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.resnet_glue import use_fused_resnets
    from pipeline.diffusion.transformer_glue import use_fused_transformers
    from pipeline.diffusion.upsample_glue import use_subpixel_upsamplers

    scaling, scope = VARIANTS[name]
    parts = name.split("-")
    _plain(pipe)  # whatever the last variant set up
    if "gn" in parts:
        use_group_norm_operator(pipe.unet, no_grad=True)
    nchw = "nchw" in parts or (scope == "blocks" and "cl" not in parts)
    pipe.unet.to(memory_format=torch.contiguous_format if nchw else torch.channels_last)  # as use_channels_last does
    figures: dict[str, Any] = {}
    if "fused" in parts:
        figures["fused_resnet_blocks"] = use_fused_resnets(pipe.unet, fold_biases="biased" not in parts)
    if "tokens" in parts:
        figures["fused_transformers"] = use_fused_transformers(pipe.unet)
    if "subpixel" in parts:
        figures["subpixel_upsamplers"] = use_subpixel_upsamplers(pipe.unet)
    if "int8attn" in parts:
        from bench.attention_int8 import use_quantized_attention

        figures["int8_attentions"] = use_quantized_attention(pipe.unet)
    if scaling:
        figures["fp8_layers"] = use_float8_linears(pipe.unet, scaling=scaling)
        if "shared" in parts:
            figures["shared_input_groups"] = share_input_scales(pipe.unet)
        if "fp8conv" in parts or "fp8convcast" in parts:
            figures["fp8_convs"] = use_float8_convs(pipe.unet)
        if "ffgate" in parts:
            figures["fused_feed_forwards"] = use_fused_feed_forwards(pipe.unet)
        if scaling == "static":
            figures["calibrated"] = calibrate_float8(pipe.unet, calibrate)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_float8", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)} (default: all)"
    )
    parser.add_argument("--profile", action="store_true", help="add each variant's kernels by kind")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    parser.add_argument(
        "--compile-mode", choices=COMPILE_MODES, default="default", help="the compiles' mode (default: the worker's)"
    )
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)
    use_cudnn_autotune(args)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants names {', '.join(unknown)}; pick from {', '.join(VARIANTS)}")

    from pipeline.diffusion.acceleration import use_fast_maths
    from pipeline.diffusion.loading import pick_device

    device = pick_device()
    if device == "cpu" and any(name.endswith("-graphs") for name in names):
        parser.error("--variants ending -graphs replay CUDA graphs, which need a CUDA GPU; this machine has none")
    pipe = benchmark_pipeline(args.model, device)
    use_fast_maths(pipe)  # TF32 and cuDNN's autotuner as a worker sets them
    results: dict[str, Any] = {
        **describe_run(args.model),
        "cudnn_autotune": args.cudnn_autotune,
        "compile_mode": args.compile_mode,
        "unet": [],
    }

    record = list_recorder(results, "unet", args.out)

    with compile_mode(args.compile_mode):
        run_variants(pipe, names, record=record, profile=args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
