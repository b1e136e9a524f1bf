"""An experiment: a transformer block's residual add, layer norm and the next FP8 layer's input cast in one Triton
kernel, against the kernels inductor writes for the same ops inside a worker's compiled blocks.

Norms are 15.2 of a replayed render call's 97.1 ms on an H100, most of them inductor's layer norms fused with the
residual add before them and the FP8 cast after (BENCHMARKS.md 2026-12-06 twenty-third session); the eighteenth
session's count put them ~6 ms above what their bytes cost at the card's bandwidth. Each program here takes
``ROWS`` tokens whole in registers: it reads the two bf16 inputs once, writes their bf16 sum (the next residual) and
the e4m3 normalised row, one pass and no second read of the row. The maths are the worker's: the sum rounded to
bf16, the norm in float32 over the bf16 sum, its output rounded to bf16, then divided by the layer's input scale,
clipped to e4m3's range and cast. ``python -m bench.benchmark_layer_norm_float8`` times it against inductor's.

(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = ["ROWS", "WARPS", "add_layer_norm_float8"]

ROWS = 4  # tokens a program normalises: a guess until ``bench.benchmark_layer_norm_float8 --tiles`` times others
WARPS = 4


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _add_layer_norm_float8(  # type: ignore[no-untyped-def]
    a, b, weight, bias, scale, total, out, rows, width, eps,
    ADD: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr,
):  # fmt: skip
    """``out = fp8(layer_norm(a + b) / scale)`` and ``total = a + b`` (bf16) for ``ROWS`` rows of ``width`` values;
    without ``ADD``, the norm of ``a`` alone and no ``total``."""
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    column = tl.arange(0, BLOCK)
    mask = (row < rows)[:, None] & (column < width)[None, :]
    offset = row.to(tl.int64)[:, None] * width + column[None, :]
    x = tl.load(a + offset, mask=mask, other=0.0).to(tl.float32)
    if ADD:
        # The worker's bf16 add: summed in float32, rounded to bf16 (Triton's interpreter adds bf16 as integers).
        x = (x + tl.load(b + offset, mask=mask, other=0.0).to(tl.float32)).to(tl.bfloat16)
        tl.store(total + offset, x, mask=mask)
        x = x.to(tl.float32)
    mean = tl.sum(x, axis=1) / width
    centred = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / width + eps)
    w = tl.load(weight + column, mask=column < width, other=0.0).to(tl.float32)
    shift = tl.load(bias + column, mask=column < width, other=0.0).to(tl.float32)
    normed = (centred * rstd[:, None] * w[None, :] + shift[None, :]).to(tl.bfloat16).to(tl.float32)
    quantized = tl.clamp(normed / tl.load(scale), -448.0, 448.0)
    tl.store(out + offset, quantized.to(out.dtype.element_ty), mask=mask)


def add_layer_norm_float8(
    a: torch.Tensor,
    b: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    scale: torch.Tensor,
    *,
    tiles: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(``a + b`` in bf16, the e4m3 rows of ``layer_norm(a + b) / scale``) for bf16 (tokens, width) ``a`` and ``b``
    (None: the norm of ``a`` alone, and no sum); ``tiles``: (rows a program, warps) in place of the module's."""
    rows, width = a.shape
    total = torch.empty_like(a) if b is not None else None
    out = torch.empty((rows, width), dtype=torch.float8_e4m3fn, device=a.device)
    if rows:
        per_program, warps = tiles or (ROWS, WARPS)
        _add_layer_norm_float8[(triton.cdiv(rows, per_program),)](
            a, b if b is not None else a, weight, bias, scale, total if total is not None else a, out, rows, width,
            eps, ADD=b is not None, BLOCK=triton.next_power_of_2(width), ROWS=per_program, num_warps=warps,
        )  # fmt: skip
    return total, out
