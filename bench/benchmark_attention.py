"""``python -m bench.benchmark_attention``: the UNet's own attention calls at a request's shape, timed under each of
torch's scaled-dot-product attention backends on this GPU.

The calls are recorded from one eager UNet call at the linkedin look's size and CFG batch (every distinct query, key
and value shape, with how often a call makes it), so the figures are SDXL's attention as a request runs it, not a
synthetic shape. Each backend is timed forward (rendering) and forward with backward (a training step's attention),
and its output is compared with the flash backend's. ``default`` is what torch picks with no preference set: what a
plain diffusers pipeline runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bench.benchmark_unet import unet_call_inputs
from bench.measure import benchmark_pipeline

__all__ = ["attention_shapes", "main", "time_backend"]

# (shape, strides) of query, key and value: the strides decide which backends accept a call (diffusers hands them
# transposed views of the projections' outputs, not contiguous tensors).
Layout = tuple[tuple[int, ...], tuple[int, ...]]
Shape = tuple[Layout, Layout, Layout]
BACKENDS = ("default", "FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")


def _layout(tensor: Any) -> Layout:
    return tuple(tensor.shape), tuple(tensor.stride())


def _tensor(layout: Layout, *, dtype: Any, device: str, grad: bool = False) -> Any:
    """A standard-normal tensor of ``layout``'s shape and strides."""
    import torch

    shape, stride = layout
    return torch.empty_strided(shape, stride, device=device, dtype=dtype).normal_().requires_grad_(grad)


@contextmanager
def _recording(shapes: Counter[Shape]) -> Iterator[None]:
    """Count the (query, key, value) shapes of every ``F.scaled_dot_product_attention`` call made inside."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    def recorded(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        shapes[_layout(query), _layout(key), _layout(value)] += 1
        return original(query, key, value, *args, **kwargs)

    F.scaled_dot_product_attention = recorded  # diffusers' processors look the function up at each call
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def attention_shapes(pipe: Any, *, batch: int) -> Counter[Shape]:
    """The distinct attention shapes of one UNet call at ``batch`` (the linkedin look's size), with their counts."""
    import torch

    shapes: Counter[Shape] = Counter()
    with _recording(shapes), torch.no_grad():
        pipe.unet(**unet_call_inputs(pipe, batch=batch))
    return shapes


def _backend(name: str) -> Any:
    import torch.nn.attention as attention

    return nullcontext() if name == "default" else attention.sdpa_kernel([getattr(attention.SDPBackend, name)])


def _attend(q: Any, k: Any, v: Any, grad: Any | None) -> Any:
    """One attention call, and its backward pass when given the output's ``grad``."""
    import torch.nn.functional as F

    out = F.scaled_dot_product_attention(q, k, v)
    if grad is not None:
        out.backward(grad)
    return out


def time_backend(
    name: str, shapes: Counter[Shape], *, dtype: Any, device: str, backward: bool, repeats: int = 20
) -> dict[str, Any]:
    """Seconds one UNet call's attention takes under backend ``name`` (each shape timed on its own, median of
    ``repeats``, times its count), and the largest difference from the flash backend's output."""
    import torch

    total, per_shape, worst = 0.0, [], 0.0
    for layouts, count in shapes.items():
        torch.manual_seed(0)
        q, k, v = (_tensor(layout, dtype=dtype, device=device, grad=backward) for layout in layouts)
        grad = torch.randn(q.shape, device=device, dtype=dtype) if backward else None
        try:
            with _backend(name):
                out = _attend(q, k, v, grad)  # warm-up, and the output to compare
                torch.cuda.synchronize()
                seconds = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    _attend(q, k, v, grad)
                    torch.cuda.synchronize()
                    seconds.append(time.perf_counter() - start)
        except RuntimeError as error:  # a backend that refuses this shape or card says why
            return {"backend": name, "unavailable": str(error).splitlines()[0][:200]}
        with _backend("FLASH_ATTENTION"), torch.no_grad():
            reference = _attend(q, k, v, None)
        worst = max(worst, float((out.detach().float() - reference.float()).abs().max()))
        median = statistics.median(seconds)
        total += median * count
        per_shape.append({"q": layouts[0], "kv": layouts[1], "count": count, "ms": round(median * 1e3, 3)})
    return {
        "backend": name,
        "pass": "forward and backward" if backward else "forward",
        "seconds_per_unet_call": round(total, 4),
        "max_abs_difference_from_flash": round(worst, 4),
        "shapes": per_shape,
    }


def default_choice(shapes: Counter[Shape], *, dtype: Any, device: str) -> dict[str, str]:
    """The backend torch picks for each shape with no preference set."""
    import torch
    from torch.nn.attention import SDPBackend

    picks = {}
    for layouts in shapes:
        q, k, v = (_tensor(layout, dtype=dtype, device=device) for layout in layouts)
        picks[f"q{list(q.shape)} kv{list(k.shape)}"] = SDPBackend(torch._fused_sdp_choice(q, k, v)).name
    return picks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_attention", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="UNet batch (8: a 4-image request with CFG)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the backends compared are GPU kernels")
    pipe = benchmark_pipeline("sdxl", "cuda")
    shapes = attention_shapes(pipe, batch=args.batch)
    dtype = pipe.unet.dtype
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "batch": args.batch,
        "priority_order": [torch.nn.attention.SDPBackend(i).name for i in torch._C._get_sdp_priority_order()],
        "default_choice": default_choice(shapes, dtype=dtype, device="cuda"),
        "timed": [],
    }
    passes: list[Callable[[str], dict[str, Any]]] = [
        lambda name: time_backend(name, shapes, dtype=dtype, device="cuda", backward=False),
        lambda name: time_backend(name, shapes, dtype=dtype, device="cuda", backward=True),
    ]
    for timed in passes:
        for name in BACKENDS:
            figures = timed(name)
            results["timed"].append(figures)
            brief = {key: value for key, value in figures.items() if key != "shapes"}
            print("attention", json.dumps(brief), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
