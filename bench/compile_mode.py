"""``--compile-mode``: the benchmark's compiles in another torch.compile mode than the worker's (torch's default).

The product compiles in one mode only; a benchmark that wants another sets inductor's options for that mode around
the product's own call, so the code it times is still the worker's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["COMPILE_MODES", "compile_mode"]

# "tuned": the worker's mode with the Triton kernels inductor writes (pointwise and reductions: the layer norms'
# forward and backward inside the compiled blocks) tuned by coordinate descent at compile, no GEMM autotuning;
# "tuned-looped": the same with reductions looping over their rows instead of holding a row at once (persistent),
# so the tuner picks the reduction's tile too (inductor's own recipe for tuning reductions, pytorch/pytorch#97203).
COMPILE_MODES = ("default", "tuned", "tuned-looped", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@contextmanager
def compile_mode(mode: str) -> Iterator[None]:
    """Inside, every inductor compile of this process compiles as ``torch.compile(mode=mode)`` would.

    'default' (the worker's mode) changes nothing. The autotuning modes also get the tuning switches of diffusers'
    SDXL speed tutorial: in 'default' mode those made SDXL's first compile far longer (BENCHMARKS.md, first session),
    so they pay only with autotuning. 'tuned' is 'default' with coordinate descent alone: that first compile was of
    the whole UNet, where a worker compiles its repeated blocks once (the scope "blocks").
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"mode must be one of {COMPILE_MODES}, but is {mode!r}.")
    if mode == "default":
        yield
        return
    import torch._inductor.config as inductor
    from torch._inductor import list_mode_options

    options: dict[str, object] = (
        {"coordinate_descent_tuning": True, "triton.persistent_reductions": mode == "tuned"}
        if mode.startswith("tuned")
        else dict(list_mode_options(mode))
    )
    if mode.startswith("max-autotune"):
        options.update(
            conv_1x1_as_mm=True,
            coordinate_descent_tuning=True,
            epilogue_fusion=False,
            coordinate_descent_check_all_directions=True,
        )
    with inductor.patch(options):
        yield
