"""``python -m bench.benchmark_group_norm``: the UNet's group norms, torch's against ``headshot::group_norm``, in NCHW
and channels-last.

The shapes are those of SDXL's own norms, recorded by hooks on one UNet call at a 4-image request's CFG batch (8
latents at the linkedin style's size) and one at a training call's (16 latents at 1024 px), each with how many norms a
call runs at it. For every shape this times torch's norm and the operator as a worker runs them: rendering's forward
in bf16, and training's forward plus backward to the input, torch's under autocast (which runs it in float32, copies
included) as a worker's eager norms trained before the operator. Channels-last (the "unet" and "regions" scopes'
layout): torch's eager norm, inductor's compiled one, and the operator's NHWC kernels. Figures are GPU kernel time
from the profiler (the host's launches stay out), summed over a call's norms; each shape's outputs and input
gradients are set against float64 maths. A GPU only.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench.benchmark_geglu import _kernel_ms
from bench.measure import benchmark_pipeline, describe_run

__all__ = ["main", "norm_shapes"]


def norm_shapes(pipe: Any, inputs: dict[str, Any]) -> Counter[tuple[tuple[int, ...], int]]:
    """(input shape, groups) of every ``torch.nn.GroupNorm`` one UNet call at ``inputs`` runs, counted."""
    import torch

    seen: Counter[tuple[tuple[int, ...], int]] = Counter()
    hooks = [
        module.register_forward_pre_hook(lambda module, args: seen.update([(tuple(args[0].shape), module.num_groups)]))
        for module in pipe.unet.modules()
        if isinstance(module, torch.nn.GroupNorm)
    ]
    try:
        with torch.no_grad():
            pipe.unet(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _relative(got: Any, expected: Any) -> float:
    return float((got.double() - expected).norm() / expected.norm())


WAYS = ("torch", "operator", "torch channels-last", "inductor channels-last", "operator channels-last")


def _shape_figures(shape: tuple[int, ...], groups: int, training: bool, ways: tuple[str, ...]) -> dict[str, Any]:
    import torch
    from torch.nn import functional

    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 2 + 0.5
    weight = torch.randn(shape[1], device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(shape[1], device="cuda", dtype=torch.bfloat16)
    grad = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    reference_x = x.double().requires_grad_(training)
    reference = functional.group_norm(reference_x, groups, weight.double(), bias.double(), 1e-5)
    if training:
        reference.backward(grad.double())

    def torch_norm(given: Any) -> Any:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=training):
            return functional.group_norm(given, groups, weight, bias, 1e-5)

    def operator(given: Any) -> Any:
        return torch.ops.headshot.group_norm(given, weight, bias, groups, 1e-5)[0]

    # The "unet" and "regions" scopes' norms: inductor compiles them inside channels-last graphs.
    compiled = torch.compile(torch_norm, dynamic=False)
    norms = {"torch": torch_norm, "operator": operator, "inductor": compiled}
    figures: dict[str, Any] = {"shape": list(shape), "groups": groups}
    for way in ways:
        layout = torch.channels_last if way.endswith("channels-last") else torch.contiguous_format
        given = x.detach().contiguous(memory_format=layout).requires_grad_(training)  # a leaf of its own
        given_grad = grad.contiguous(memory_format=layout)
        norm = norms[way.split()[0]]

        def run(given: Any = given, given_grad: Any = given_grad, norm: Any = norm) -> Any:
            out = norm(given)
            if training:
                given.grad = None
                out.backward(given_grad.to(out.dtype))
            return out

        figures[f"{way}_ms"] = round(_kernel_ms(run), 4)
        out = run()
        figures[f"{way}_error"] = round(_relative(out.detach(), reference.detach()), 5)
        if training:
            figures[f"{way}_gradient_error"] = round(_relative(given.grad, reference_x.grad), 5)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_group_norm", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of: {', '.join(WAYS)} (default: all)")
    args = parser.parse_args(argv)
    ways = tuple(way.strip() for way in args.ways.split(","))
    unknown = [way for way in ways if way not in WAYS]
    if unknown:
        parser.error(f"unknown ways {unknown}; pick from: {', '.join(WAYS)}")

    import torch

    import pipeline.diffusion.group_norm  # noqa: F401 - registers headshot::group_norm
    from bench.benchmark_unet import unet_call_inputs

    if not torch.cuda.is_available():
        parser.error("the Triton kernels need a CUDA GPU; this machine has none")
    pipe = benchmark_pipeline("sdxl", "cuda")
    calls = {
        "render, batch 8, 928x1152, forward": (unet_call_inputs(pipe, batch=8), False),
        "training, batch 16, 1024 px, forward and backward": (unet_call_inputs(pipe, batch=16, aspect=(1, 1)), True),
    }
    results: dict[str, Any] = {**describe_run("sdxl"), "calls": []}
    for label, (inputs, training) in calls.items():
        shapes = norm_shapes(pipe, inputs)
        rows = []
        for (shape, groups), count in sorted(shapes.items()):
            rows.append({**_shape_figures(shape, groups, training, ways), "norms_a_call": count})
            print(json.dumps(rows[-1]), flush=True)
        totals = {way: round(sum(row[f"{way}_ms"] * row["norms_a_call"] for row in rows), 2) for way in ways}
        results["calls"].append({"call": label, "ms_a_call": totals, "shapes": rows})
        print(json.dumps({"call": label, "ms_a_call": totals}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
