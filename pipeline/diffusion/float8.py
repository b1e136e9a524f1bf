"""FP8 matrix products for rendering: the UNet's transformer layers multiply in float8 (e4m3).

On Hopper and Ada GPUs the tensor cores multiply float8 at twice the bf16 rate, and SDXL spends about 70% of a
UNet call's FLOPs in the linear layers of its transformer blocks (attention projections, feed-forward, proj_in/out).
``Float8Linear`` keeps the layer's bf16 weight (the same ``Parameter``: LoRA merging and training still see it) plus
an FP8 copy, and multiplies through ``torch._scaled_mm`` in one of two schemes (``SCALINGS``):

- ``"dynamic"``: one scale per weight row, and each forward scales every input row by its own absolute maximum
  (torchao's "dynamic activation, rowwise weight"). Needs nothing but the weights, and pays a reduction over every
  input before each product: compiled, it measured no faster than bf16 (BENCHMARKS.md).
- ``"static"``: one scale for the whole weight and one for the layer's inputs, fixed beforehand by
  ``float8_scales.calibrate_float8`` from the largest input each layer saw in a few real renders (torchao's
  "static activation, per-tensor" scheme; MLPerf's FP8 SDXL entries calibrate the same way). The input's cast is
  then a multiply that fuses into whatever kernel made the input (a norm, attention), and the product is cuBLAS's
  per-tensor FP8 GEMM with the bias added in its epilogue. Inputs beyond the calibrated range are clipped to FP8's
  largest value.

With gradients on, as in training a LoRA on the same pipeline, the layer is the plain bf16 ``nn.Linear``, unless
``pipeline.diffusion.float8_training`` made it train in FP8 too: for a frozen weight, the forward product and the
backward product to the input (there is no weight gradient) run in FP8, the input in e4m3 and the output's gradient
in e5m2 (the wider range gradients need), each by a calibrated scale once calibrated, else by its own largest value
(torchao's "tensorwise" training recipe).

The FP8 copies are snapshots, so whoever changes the weight in place must call ``refresh()``; ``LoraSlot`` does after
every merge and unmerge.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

__all__ = [
    "EAGER_INPUT_CAST",
    "FLOAT8_MODULE_PARTS",
    "SCALINGS",
    "Float8Linear",
    "fp8_tensor_cores",
    "refresh_float8",
    "scale_for",
    "use_float8_linears",
]

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max  # 448
GRADIENT_FLOAT8 = torch.float8_e5m2  # 2 mantissa bits, but down to 2**-16 (gradients span more than activations)
# The UNet's transformer blocks; their time-embedding and ResNet linears see one row per image and gain nothing.
FLOAT8_MODULE_PARTS = (".attentions.",)
SCALINGS = ("dynamic", "static")
# How a static layer run outside any compiled region casts its input: under the worker's ``blocks`` scope that is each
# Transformer2DModel's ``proj_in`` and ``proj_out`` (22 layers on SDXL), whose eager cast is four kernels with float32
# temporaries. "compiled" (one generated kernel for every shape; the UNet call 1.4% faster on an H200, BENCHMARKS.md
# 2026-12-03 sixth session) or "eager"; ``bench.benchmark_float8`` variant ``static-blocks-eager-cast`` sets "eager"
# before compiling (graphs guard on it).
EAGER_INPUT_CAST = "compiled"
# Whether a static layer's product sums in the tensor cores' FP8 accumulator (cuBLAS's ``use_fast_accum``), which keeps
# fewer bits than float32, or promotes its sums to float32 as it goes. Fast: a replayed render call 0.1030 s against
# 0.1060 s on an H100, its difference from bf16 3.82% against 3.85% (BENCHMARKS.md 2026-12-06 twenty-second
# session): each product's output is rounded to bf16, and the next layer's input to e4m3, far coarser than what the
# accumulator loses. ``bench.benchmark_float8``'s ``-preciseacc`` variants set False before compiling (graphs trace it).
FAST_ACCUMULATION = True
# Layers quantized together by ``refresh_float8``: their weights are stacked in float32 (32 of SDXL's largest,
# 1280x5120, take 0.8 GB).
REFRESH_CHUNK = 32


def fp8_tensor_cores(device: torch.device) -> bool:
    """Whether ``device`` multiplies FP8 on tensor cores (CUDA compute capability 8.9 or newer: Ada, Hopper, ...)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


class Float8Linear(nn.Linear):
    """An ``nn.Linear`` that renders through FP8 products; build it with ``from_linear``."""

    weight_fp8: torch.Tensor
    weight_fp8_t: torch.Tensor  # the FP8 weight transposed (in, out), for training's backward; empty until then
    weight_scale: torch.Tensor
    input_scale: torch.Tensor
    input_max: torch.Tensor
    scaling: str
    calibrating: bool  # recording its largest input (calibrate_float8) instead of rendering in FP8
    calibrated: bool
    gradient_scale: torch.Tensor  # training's backward: e5m2 scale of the output's gradient (NaN: its own largest)
    gradient_max: torch.Tensor  # the largest output gradient seen while ``calibrating_gradients``
    calibrating_gradients: bool
    gradients_calibrated: bool

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, scaling: str = "dynamic") -> Float8Linear:
        """A Float8Linear sharing ``linear``'s weight and bias tensors (no copy of the bf16 weight)."""
        out_features, in_features = linear.weight.shape
        if in_features % 16 or out_features % 16:
            raise ValueError(
                f"FP8 products need both sides of the weight to be multiples of 16, but it is {out_features}x"
                f"{in_features}; leave this layer in bf16."
            )
        if scaling not in SCALINGS:
            raise ValueError(f"FP8 scaling must be one of {', '.join(SCALINGS)}, not {scaling!r}.")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = in_features, out_features
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer.scaling = scaling
        layer.calibrating = layer.calibrating_gradients = layer.gradients_calibrated = False
        layer.calibrated = scaling == "dynamic"
        device = linear.weight.device
        scale_shape = (1, out_features) if scaling == "dynamic" else ()
        layer.register_buffer("weight_fp8", torch.empty(out_features, in_features, dtype=FLOAT8, device=device))
        layer.register_buffer("weight_fp8_t", torch.empty(0, dtype=FLOAT8, device=device))
        layer.register_buffer("weight_scale", torch.empty(scale_shape, dtype=torch.float32, device=device))
        # NaN until calibrated: a static layer refuses to render without its input scale.
        layer.register_buffer("input_scale", torch.full((), torch.nan, device=device))
        layer.register_buffer("input_max", torch.zeros((), device=device))
        layer.register_buffer("gradient_scale", torch.full((), torch.nan, device=device))
        layer.register_buffer("gradient_max", torch.zeros((), device=device))
        layer.refresh()
        return layer

    def refresh(self) -> None:
        """Quantize the current bf16 weight again, in place (a compiled graph keeps the same buffers)."""
        refresh_float8([self])

    @property
    def trains_in_float8(self) -> bool:
        """Whether a forward with gradients on multiplies in FP8 (``float8_training.use_float8_training``)."""
        return self.weight_fp8_t.numel() > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.trains_in_float8 and not self.calibrating:
            if self.weight.requires_grad:
                raise RuntimeError(
                    "This FP8 layer trains with its weight frozen (float8_training.use_float8_training), but the "
                    "weight now requires a gradient; train LoRAs on it, or train the weight on the plain nn.Linear."
                )
            return _frozen_float8_linear(x, self)
        if torch.is_grad_enabled() or self.calibrating:
            if self.calibrating:
                self.input_max.copy_(torch.maximum(self.input_max, x.detach().abs().amax().float()))
            return functional.linear(x, self.weight, self.bias)
        if not self.calibrated:
            raise RuntimeError(
                "This FP8 layer scales its inputs statically and has not been calibrated; run calibrate_float8 on "
                "its model (a few renders) before rendering, or convert it with scaling='dynamic'."
            )
        if self.scaling == "static":
            product = self.quantized_product(self.cast_input(x), x.dtype)
            return product.reshape(*x.shape[:-1], self.out_features)
        quantized, scale = _quantize_rows(_rows(x, self.in_features))
        # The weight is stored (out, in) row-major, so its transpose is the column-major operand _scaled_mm wants.
        product = torch._scaled_mm(
            quantized, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype
        )
        if self.bias is not None:
            product = product + self.bias
        return product.reshape(*x.shape[:-1], self.out_features)

    def cast_input(self, x: torch.Tensor) -> torch.Tensor:
        """A static layer's input ``x`` as the e4m3 (rows, in features) matrix its product takes: divided by the
        input scale and clipped to FP8's range."""
        return _cast_input(_rows(x, self.in_features), self.input_scale)

    def quantized_product(self, quantized: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """A static layer's (rows, out features) product of ``quantized``, e4m3 rows divided by its input scale
        already (``cast_input``, or an operator that writes them so), plus the bias, in ``out_dtype``."""
        return torch._scaled_mm(
            quantized,
            self.weight_fp8.t(),
            scale_a=self.input_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=out_dtype,
            use_fast_accum=FAST_ACCUMULATION,
        )


@torch.no_grad()
def refresh_float8(layers: Sequence[Float8Linear], *, training_copies: bool = True) -> None:
    """Quantize ``layers``' current bf16 weights again, in place, in stacks of same-shaped layers (and the transposed
    copies of layers that train in FP8, unless ``training_copies`` is False).

    A LoRA slot merges a user's LoRA into ~560 layers and restores them after the request; quantizing them one by
    one queued several small kernels each from Python and took as long as the merge itself (BENCHMARKS.md,
    2026-12-03 fourth session). A stack costs the same few kernels whatever its height.
    """
    groups: dict[tuple[str, tuple[int, ...], torch.dtype], list[Float8Linear]] = {}
    for layer in layers:
        groups.setdefault((layer.scaling, tuple(layer.weight.shape), layer.weight.dtype), []).append(layer)
    for (scaling, _, _), members in groups.items():
        for first in range(0, len(members), REFRESH_CHUNK):
            chunk = members[first : first + REFRESH_CHUNK]
            stacked = torch.stack([layer.weight.detach() for layer in chunk]).float()
            dims = (2,) if scaling == "dynamic" else (1, 2)  # one scale per output row, or per weight
            scale = scale_for(stacked.abs().amax(dim=dims, keepdim=True))
            quantized = _to_float8(stacked, scale)
            torch._foreach_copy_([layer.weight_fp8 for layer in chunk], list(quantized.unbind(0)))
            training = [index for index, layer in enumerate(chunk) if training_copies and layer.trains_in_float8]
            if training:
                torch._foreach_copy_(
                    [chunk[index].weight_fp8_t for index in training],
                    [quantized[index].t() for index in training],
                )
            scales = scale.transpose(1, 2) if scaling == "dynamic" else scale.reshape(len(chunk))
            torch._foreach_copy_([layer.weight_scale for layer in chunk], list(scales.unbind(0)))


def _rows(x: torch.Tensor, features: int) -> torch.Tensor:
    """``x`` as a row-major (rows x ``features``) matrix, the layout ``_scaled_mm`` takes its first operand in.

    ``reshape`` alone can return a column-major view: at batch 1 diffusers' ``proj_in`` gets its input as a permuted
    view of an NCHW tensor, which flattens without a copy into rows of stride 1 and columns of stride H*W, and a cast
    keeps those strides (cuBLASLt then refuses the product; larger batches reshape into a copy). ``contiguous`` is a
    no-op for every other input.
    """
    return x.reshape(-1, features).contiguous()


def scale_for(largest: torch.Tensor, dtype: torch.dtype = FLOAT8) -> torch.Tensor:
    """The scale that maps ``largest`` (a tensor's, a row's) to ``dtype``'s largest value (float32, never zero)."""
    return largest.float().clamp(min=1e-12) / torch.finfo(dtype).max


def _to_float8(tensor: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = FLOAT8) -> torch.Tensor:
    """``tensor / scale`` in ``dtype``, clipped to its range (a plain cast of an overflow would give NaN)."""
    largest = torch.finfo(dtype).max
    return (tensor.float() / scale).clamp(-largest, largest).to(dtype)


def _cast_input(rows: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``_to_float8`` for a static layer's input: inside a compiled region traced into its graph (fused with whatever
    made the input), outside one as ``EAGER_INPUT_CAST`` says."""
    if EAGER_INPUT_CAST == "compiled" and not torch.compiler.is_compiling():
        return _compiled_cast()(rows, scale)
    return _to_float8(rows, scale)


@functools.cache
def _compiled_cast() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``_to_float8`` as one generated kernel for inputs of any shape (compiled at its first call; an input cut from a
    batch of one is a second graph, as dynamo specialises size 1: a worker's renders with CFG never are)."""
    return torch.compile(_to_float8, dynamic=True)


def _quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix`` in FP8 with one float32 scale per row (rows x 1), each row's largest value mapped to FP8's max."""
    scale = scale_for(matrix.abs().amax(dim=1, keepdim=True))
    return _to_float8(matrix, scale), scale


class _FrozenFloat8Product(torch.autograd.Function):
    """``rows @ weight.T + bias`` for a frozen weight, in FP8 both ways: forward with the input in e4m3 (by
    ``input_scale``, or by its own largest value when that is None), backward (to the input only) with the gradient
    in e5m2 (by ``gradient_scale``, or by its own largest value when that is None, which is then also recorded in
    ``gradient_max`` when given: calibration)."""

    @staticmethod
    def forward(
        ctx: Any,
        rows: torch.Tensor,
        weight_fp8: torch.Tensor,
        weight_fp8_t: torch.Tensor,
        weight_scale: torch.Tensor,
        input_scale: torch.Tensor | None,
        gradient_scale: torch.Tensor | None,
        gradient_max: torch.Tensor | None,
        bias: torch.Tensor | None,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        scale = scale_for(rows.detach().abs().amax()) if input_scale is None else input_scale
        ctx.input_dtype = rows.dtype
        ctx.gradient_by = "own" if gradient_scale is None else "fixed"
        if gradient_scale is None and gradient_max is not None:
            ctx.gradient_by = "own, recorded"
        kept = gradient_scale if gradient_scale is not None else gradient_max
        ctx.save_for_backward(weight_fp8_t, weight_scale, *([] if kept is None else [kept]))
        return torch._scaled_mm(
            _to_float8(rows, scale),
            weight_fp8.t(),
            scale_a=scale,
            scale_b=weight_scale,
            bias=None if bias is None else bias.to(out_dtype),
            out_dtype=out_dtype,
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight_fp8_t, weight_scale, *kept = ctx.saved_tensors
        grad = grad.contiguous()  # _scaled_mm takes its first operand row-major (a no-op for the usual gradient)
        if ctx.gradient_by == "fixed":
            scale = kept[0]  # no reduction first: the cast fuses into the kernel that made the gradient
        else:
            largest = grad.abs().amax().float()
            if ctx.gradient_by == "own, recorded":
                kept[0].copy_(torch.maximum(kept[0], largest))
            scale = scale_for(largest, GRADIENT_FLOAT8)
        # grad (rows x out) @ weight (out x in); the transposed copy's transpose is the column-major operand.
        grad_rows = torch._scaled_mm(
            _to_float8(grad, scale, GRADIENT_FLOAT8),
            weight_fp8_t.t(),
            scale_a=scale,
            scale_b=weight_scale,
            out_dtype=grad.dtype,
        )
        return grad_rows.to(ctx.input_dtype), None, None, None, None, None, None, None, None


def _frozen_float8_linear(x: torch.Tensor, layer: Float8Linear) -> torch.Tensor:
    """``layer``'s product with gradients on, in FP8 (``_FrozenFloat8Product``), in autocast's dtype when it is on; a
    calibrated layer scales its input as it does rendering, and its output's gradient by the scale
    ``float8_training.calibrate_float8_gradients`` fixed, when it has one (no reduction over either first)."""
    device_type = x.device.type
    out_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    rows = _rows(x, layer.in_features)
    product = _FrozenFloat8Product.apply(
        rows,
        layer.weight_fp8,
        layer.weight_fp8_t,
        layer.weight_scale,
        layer.input_scale if layer.calibrated else None,
        layer.gradient_scale if layer.gradients_calibrated and not layer.calibrating_gradients else None,
        layer.gradient_max if layer.calibrating_gradients else None,
        layer.bias,
        out_dtype,
    )
    return product.reshape(*x.shape[:-1], layer.out_features)


def use_float8_linears(
    unet: Any, *, scaling: str = "dynamic", module_parts: tuple[str, ...] = FLOAT8_MODULE_PARTS
) -> int:
    """Make every eligible ``nn.Linear`` of ``unet`` a ``Float8Linear`` in place; return how many were converted.

    Eligible: inside a module whose dotted name contains one of ``module_parts``, with both weight sides multiples
    of 16. A LoRA layer's base layer is converted too (its LoRA branch stays bf16). Calling it again converts nothing.
    ``scaling="static"`` layers render only after ``calibrate_float8``.
    """
    converted = 0
    for name, module in list(unet.named_modules()):
        if type(module) is not nn.Linear or not any(part in f".{name}." for part in module_parts):
            continue
        if ".lora_" in f".{name}":  # a LoRA's own A/B matrices: tiny, and the slot's must stay swappable in bf16
            continue
        if module.in_features % 16 or module.out_features % 16:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(unet.get_submodule(parent_name), child, Float8Linear.from_linear(module, scaling=scaling))
        converted += 1
    return converted
