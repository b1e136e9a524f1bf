"""The Triton kernel behind ``headshot::attention_int8`` on CUDA (``bench.attention_int8``: an experiment, slower than
cuDNN's attention on an H100): an attention whose first product runs in int8, flash attention's online softmax after
it, bf16 in and out.

Each program takes ``BLOCK_M`` queries of one batch row and one head, and walks the keys ``BLOCK_N`` at a time:

- the queries and each tile of keys are rounded to int8 by a scale of each token's own (its largest of the head's
  values at 127), so one large token costs no other its precision; ``q . k`` is one int8 product summed exactly in
  int32, read as a float by an integer add (no conversion instruction), and the two tokens' scales undo the
  rounding's in the softmax's one multiply-add an element;
- the softmax's weights (at most 1 once the running maximum is taken off) multiply the values in bf16, each tile's
  product summed in float32 and added to the output's float32 sum; or with ``PV_FLOAT8`` in e4m3: the weights at
  448 times their value, each tile of values by one scale of the tile's own;
- the queries, keys and values are read in bf16 where the projections wrote them, (batch, tokens, heads x head
  size), and rounded in registers: no pass of their own and no transposes; the output is written in that layout;
- only the last tile of keys, past the keys' end, pays for the mask.

(Triton reads a kernel's annotations and takes only ``tl.constexpr`` there: see ``group_norm_kernel``.)
"""

import os

import torch
import triton  # type: ignore[import-not-found,unused-ignore]
import triton.language as tl  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "BLOCK_M",
    "BLOCK_N",
    "KEYS_INT8",
    "K_PER_TOKEN",
    "PV_FLOAT8",
    "QK_INT8",
    "attention",
    "quantize_tokens",
]

# A program's queries and each step's keys; warps and pipeline stages: flash attention's usual Hopper tile at a head
# size of 64. On an H100 ``bench.benchmark_attention_int8 --tiles`` found 128 by 64 with 4 warps and 3 stages 20%
# faster (37.5 against 46.6 ms a render call's worth, still short of cuDNN's 19.9), but at 255 registers a thread,
# spilling where the keys come rounded (``KEYS_INT8``); this one compiles to 204 and no spills either way.
BLOCK_M = 128
BLOCK_N = 128
WARPS = 8
STAGES = 2
# Whether the second product (the softmax's weights by the values) runs in e4m3 or in bf16: e4m3 was slower (69.0
# against 46.6 ms a render call's worth) and 4x further from exact.
PV_FLOAT8 = False
# Whether each key has a scale of its own (each tile of keys one, where False) and whether the first product runs in
# int8 at all (False: bf16, as a control for the kernel itself against cuDNN's): the benchmark times each.
K_PER_TOKEN = True
QK_INT8 = True
# Whether the keys are rounded to int8 once, by a pass of their own (``quantize_tokens``), or by every program that
# reads them (a tile of keys in every program of its head: ~40% more work an element beside the softmax's, where the
# pass costs one read of the keys and a write of half of it): the pass was slower (50.5 against 46.6 ms).
KEYS_INT8 = False
ROWS = 64  # tokens a program of ``quantize_tokens`` rounds


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _int8_tokens(tile, PER_TOKEN: tl.constexpr):  # type: ignore[no-untyped-def]
    """``tile`` as int8 by a scale of each row's (token's) own, or one for the tile (``PER_TOKEN`` False): its largest
    value at 127, rounded to nearest; and the scales' reciprocals (a row's, or the tile's one):
    ``tile ~ int8 * reciprocal[:, None]`` or ``int8 * reciprocal``. Zeros stay zeros."""
    if PER_TOKEN:
        amax = tl.max(tl.abs(tile), axis=1)
        scale = tl.where(amax > 0.0, 127.0 / tl.maximum(amax, 1e-30), 1.0)
        scaled = tile * scale[:, None]
    else:
        amax = tl.max(tl.abs(tile))
        scale = tl.where(amax > 0.0, 127.0 / tl.maximum(amax, 1e-30), 1.0)
        scaled = tile * scale
    rounded = tl.where(scaled >= 0.0, scaled + 0.5, scaled - 0.5).to(tl.int8)  # the cast truncates toward zero
    return rounded, 1.0 / scale


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _attend(  # type: ignore[no-untyped-def]
    query, row_factor, top, total, acc, k, key_scales, v, kv_offset, scale_offset, kv_mask, has_key,
    MASKED: tl.constexpr, QK_INT8: tl.constexpr, K_PER_TOKEN: tl.constexpr, KEYS_INT8: tl.constexpr,
    PV_FLOAT8: tl.constexpr, BF16: tl.constexpr,
):  # fmt: skip
    """One tile of keys and values into the running maximum ``top``, sum ``total`` and output ``acc`` of a program's
    queries; ``MASKED``: the last tile, past the keys (only it pays for the mask). ``KEYS_INT8``: ``k`` holds the keys
    rounded already, ``key_scales`` their scales' reciprocals."""
    key_tile = tl.load(k + kv_offset, mask=kv_mask, other=0)
    if KEYS_INT8:
        k_unscale = tl.load(key_scales + scale_offset, mask=has_key, other=1.0)
    elif QK_INT8:
        key_tile, k_unscale = _int8_tokens(key_tile.to(tl.float32), K_PER_TOKEN)
    if QK_INT8:
        # int8 products summed exactly in int32, then read as floats by the bits of 1.5 * 2**23 (0x4B400000): an int32
        # n with |n| < 2**22 (a sum is at most 127 * 127 * 128) added to them is the float 12582912 + n exactly, for an
        # integer add where the conversion instruction runs at a quarter of the float adds' rate. The offset goes with
        # the keys' scales (one multiply-add), or with the maximum below (a row's constant).
        logits = (tl.dot(query, tl.trans(key_tile)) + 0x4B400000).to(tl.float32, bitcast=True)
        if K_PER_TOKEN:
            logits = logits * k_unscale[None, :] - (12582912.0 * k_unscale)[None, :]
            factor = row_factor
            offset = 0.0
        else:
            factor = row_factor * k_unscale
            offset = 12582912.0
    else:
        logits = tl.dot(query, tl.trans(key_tile.to(BF16)))
        factor = row_factor
        offset = 0.0
    if MASKED:
        logits = tl.where(has_key[None, :], logits, float("-inf"))
    # The softmax in base 2: exp2((logits - offset) * factor - top), one multiply-add an element.
    new_top = tl.maximum(top, (tl.max(logits, axis=1) - offset) * factor)
    rescale = tl.exp2(top - new_top)
    weights = tl.exp2(logits * factor[:, None] - (new_top + offset * factor)[:, None])
    total = total * rescale + tl.sum(weights, axis=1)
    value = tl.load(v + kv_offset, mask=kv_mask, other=0.0)
    acc = acc * rescale[:, None]
    if PV_FLOAT8:
        # The weights, at most 1, at 448 times their value; the tile's values by one scale of the tile's own; the
        # tile's sum alone in the FP8 accumulator, then added in float32.
        amax = tl.max(tl.abs(value.to(tl.float32)))
        v_scale = tl.where(amax > 0.0, 448.0 / tl.maximum(amax, 1e-30), 1.0)
        value = (value.to(tl.float32) * v_scale).to(tl.float8e4nv)
        acc += tl.dot((weights * 448.0).to(tl.float8e4nv), value) * (1.0 / (448.0 * v_scale))
    else:
        acc = tl.dot(weights.to(BF16), value.to(BF16), acc)  # bf16 products summed in float32
    return new_top, total, acc


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _attention(  # type: ignore[no-untyped-def]
    q, k, key_scales, v, out, queries, keys, heads, q_stride, kv_stride, scale,
    HEAD: tl.constexpr, PADDED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    QK_INT8: tl.constexpr, K_PER_TOKEN: tl.constexpr, KEYS_INT8: tl.constexpr, PV_FLOAT8: tl.constexpr,
    BF16: tl.constexpr,
):  # fmt: skip
    """``out = softmax(q k^T * scale) v`` for one head: ``q`` and ``out`` (batch, queries, heads x HEAD), ``k`` and
    ``v`` (batch, keys, heads x HEAD), rows ``q_stride`` and ``kv_stride`` apart, bf16; a head's values read as
    ``PADDED`` of them, zeros past ``HEAD`` (int8 products take 32 at least). The products as ``_attend`` says, in
    ``BF16`` where bf16 (float32 where Triton's interpreter runs it: it multiplies bf16 tiles as integers)."""
    block = tl.program_id(0)
    batch_head = tl.program_id(1)
    batch = batch_head // heads
    dim = tl.arange(0, PADDED)
    has_dim = dim < HEAD
    column = (batch_head % heads) * HEAD + dim
    row = block * BLOCK_M + tl.arange(0, BLOCK_M)
    q_mask = (row < queries)[:, None] & has_dim[None, :]
    q_offset = (batch * queries + row).to(tl.int64)[:, None] * q_stride + column[None, :]
    query = tl.load(q + q_offset, mask=q_mask, other=0.0)
    # The scale, log2(e) and (int8) the queries' own scales in one factor a row.
    if QK_INT8:
        query, q_unscale = _int8_tokens(query.to(tl.float32), True)
        row_factor = q_unscale * (scale * 1.4426950408889634)
    else:
        query = query.to(BF16)
        row_factor = tl.zeros((BLOCK_M,), dtype=tl.float32) + scale * 1.4426950408889634
    top = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    total = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, PADDED), dtype=tl.float32)
    whole = keys // BLOCK_N * BLOCK_N
    head = batch_head % heads
    for start in range(0, whole, BLOCK_N):
        key = start + tl.arange(0, BLOCK_N)
        kv_offset = (batch * keys + key).to(tl.int64)[:, None] * kv_stride + column[None, :]
        top, total, acc = _attend(
            query, row_factor, top, total, acc, k, key_scales, v, kv_offset, (batch * keys + key) * heads + head,
            has_dim[None, :], key < keys, False, QK_INT8, K_PER_TOKEN, KEYS_INT8, PV_FLOAT8, BF16,
        )  # fmt: skip
    if whole < keys:
        key = whole + tl.arange(0, BLOCK_N)
        kv_offset = (batch * keys + key).to(tl.int64)[:, None] * kv_stride + column[None, :]
        top, total, acc = _attend(
            query, row_factor, top, total, acc, k, key_scales, v, kv_offset, (batch * keys + key) * heads + head,
            (key < keys)[:, None] & has_dim[None, :], key < keys, True, QK_INT8, K_PER_TOKEN, KEYS_INT8, PV_FLOAT8,
            BF16,
        )  # fmt: skip
    acc = acc / total[:, None]
    tl.store(out + q_offset, acc.to(out.dtype.element_ty), mask=q_mask)


@triton.jit  # type: ignore[untyped-decorator,misc,unused-ignore]
def _quantize_tokens(  # type: ignore[no-untyped-def]
    x, out, unscale, rows, heads, stride, HEAD: tl.constexpr, PADDED: tl.constexpr, ROWS: tl.constexpr,
):  # fmt: skip
    """``ROWS`` tokens of one head of ``x`` (rows, heads x HEAD), rows ``stride`` apart, rounded to int8 by a scale of
    each token's own into ``out`` (the same layout), the scales' reciprocals into ``unscale`` (rows, heads)."""
    head = tl.program_id(1)
    row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    dim = tl.arange(0, PADDED)
    mask = (row < rows)[:, None] & (dim < HEAD)[None, :]
    offset = row.to(tl.int64)[:, None] * stride + head * HEAD + dim[None, :]
    rounded, reciprocal = _int8_tokens(tl.load(x + offset, mask=mask, other=0.0).to(tl.float32), True)
    tl.store(out + offset, rounded, mask=mask)
    tl.store(unscale + row * heads + head, reciprocal, mask=row < rows)


def quantize_tokens(x: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (batch, tokens, heads x size), each token's head rounded to int8 by its own scale (as the attention
    kernel rounds its keys), and those scales' reciprocals, float32 (batch x tokens, heads)."""
    batch, tokens, width = x.shape
    rows = batch * tokens
    out = torch.empty((batch, tokens, width), dtype=torch.int8, device=x.device)
    unscale = torch.empty((rows, heads), dtype=torch.float32, device=x.device)
    if rows:
        size = width // heads
        _quantize_tokens[(triton.cdiv(rows, ROWS), heads)](
            x, out, unscale, rows, heads, x.stride(1), HEAD=size, PADDED=max(32, size), ROWS=ROWS,
        )  # fmt: skip
    return out, unscale


def _bf16() -> object:
    """bf16 for the second product, float32 where Triton's interpreter runs the kernel (it multiplies bf16 tiles as
    integers, triton 3.9)."""
    return tl.float32 if os.environ.get("TRITON_INTERPRET") == "1" else tl.bfloat16


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    scale: float,
    keys_int8: bool | None = None,
    *,
    pv_float8: bool | None = None,
    k_per_token: bool | None = None,
    qk_int8: bool | None = None,
    tiles: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` per head, bf16 (batch, queries, heads x 64) for ``q`` (batch, queries, heads x
    64) and ``k``, ``v`` (batch, keys, heads x 64), each token's last axis contiguous. ``pv_float8``: the second
    product in e4m3, ``k_per_token``: a scale for each key, ``qk_int8``: the first product in int8 (None: the
    module's ``PV_FLOAT8``, ``K_PER_TOKEN``, ``QK_INT8``); ``keys_int8``: the keys rounded by a pass of their own
    first (``KEYS_INT8``; with int8 keys, a scale each), positional so the kernels' tests pick each way. ``tiles``:
    (queries and keys of a step, warps, stages) in place of the module's, for the benchmark's search."""
    batch, queries, width = q.shape
    keys = k.shape[1]
    out = torch.empty((batch, queries, width), dtype=q.dtype, device=q.device)
    if not (batch and queries):
        return out
    block_m, block_n, warps, stages = tiles or (BLOCK_M, BLOCK_N, WARPS, STAGES)
    qk_int8 = QK_INT8 if qk_int8 is None else qk_int8
    keys_int8 = qk_int8 and (KEYS_INT8 if keys_int8 is None else keys_int8)
    key_scales = None
    if keys_int8:
        k, key_scales = quantize_tokens(k, heads)
    grid = (triton.cdiv(queries, block_m), batch * heads)
    _attention[grid](
        q, k, key_scales, v, out, queries, keys, heads, q.stride(1), k.stride(1), scale,
        HEAD=width // heads, PADDED=max(32, width // heads), BLOCK_M=block_m, BLOCK_N=block_n,
        QK_INT8=qk_int8, K_PER_TOKEN=keys_int8 or (K_PER_TOKEN if k_per_token is None else k_per_token),
        KEYS_INT8=keys_int8,
        PV_FLOAT8=PV_FLOAT8 if pv_float8 is None else pv_float8,
        BF16=_bf16(), num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out
