"""One LoRA slot in a warm pipeline: each user's LoRA is copied into it and zeroed out again, never re-attached.

Attaching a LoRA adds layers to the denoiser (SDXL's UNet, FLUX.2's transformer), which forces a compiled one to
recompile (tens of seconds for SDXL).
The slot instead attaches one all-zero LoRA of ``max_rank`` up front, using diffusers' hot-swapping
(``enable_lora_hotswap`` pads every later LoRA to that rank and keeps its scale in a tensor), so swapping a user in
only copies weights into existing tensors. ``clear`` zeroes them again, so no user's weights stay resident.

By default (``merge=True``, how a worker renders) a swapped-in LoRA is instead folded into the base weights,
W = W0 + B·A·scale, and each slot layer is marked merged, so rendering runs the plain base layers: no extra LoRA
kernels per projection per step (``merge=False`` keeps them running; BENCHMARKS.md times the two). A merging slot
reads the file's factors itself (diffusers' key conversion and LoRA config, so every format diffusers loads gives
the scales peft would) and computes the merged weights of a chunk of same-shaped layers in one batched product,
written back in one multi-tensor copy: a few hundred kernels per swap instead of several thousand, and none of
peft's per-layer hot-swap bookkeeping on the host (BENCHMARKS.md). ``clear`` copies W0 back from a copy kept on the
same device, again in one multi-tensor copy. Subtracting the delta again (peft's ``unmerge``) is not exact in bf16:
every user would leave a rounding error behind, and over thousands of requests the errors add up to a different base
model. The copy costs memory once (about 1.9 GB for SDXL's attention projections) and makes every clear exact. Where
the base layers render in FP8 (``pipeline.diffusion.float8``), their quantized copies are refreshed after each merge
and unmerge, so they always hold the weights now in effect.

The slot works the same on either family; only the layers it covers differ (``families.default_lora_targets``).
diffusers cannot hot-swap text-encoder LoRAs (only SDXL LoRAs may have them); a LoRA that has them gets its
text-encoder part attached as an ordinary adapter for the time it is swapped in (the text encoders are not compiled,
so this costs little).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.diffusion.adapters import TEXT_ENCODER_COMPONENTS, loaded_adapters, new_adapter_name, remove_adapter
from pipeline.diffusion.families import Family, default_lora_targets, denoiser, pipeline_family
from pipeline.diffusion.lora_merge import lora_factors, stacked_factors, to_device

__all__ = ["SLOT_ADAPTER", "LoraSlot"]

SLOT_ADAPTER = "headshot-slot"

# Same-shaped layers merged per batched product: SDXL's largest projection (1280x2048) makes a chunk's float32
# temporaries about 0.7 GB, small beside the model on any GPU that renders it.
MERGE_CHUNK = 32


class LoraSlot:
    """A per-user LoRA slot on ``pipe``'s denoiser; create it before compiling the denoiser.

    ``target_modules`` None covers the layers the family's LoRAs train (``families.default_lora_targets``).
    """

    def __init__(
        self,
        pipe: Any,
        *,
        max_rank: int = 64,
        target_modules: Sequence[str] | None = None,
        merge: bool = True,
    ) -> None:
        import torch

        # 1. Check inputs: hot-swapping must be enabled before the first adapter and before compilation.
        if not isinstance(max_rank, int) or max_rank < 1:
            raise ValueError(f"max_rank must be a positive integer, but is {max_rank!r}.")
        if loaded_adapters(pipe):
            raise ValueError(
                f"LoraSlot needs a pipeline without LoRA adapters, but it has {sorted(loaded_adapters(pipe))}."
            )
        model = denoiser(pipe)
        if getattr(model, "_compiled_call_impl", None) is not None:
            raise ValueError("The denoiser is already compiled; create the LoraSlot before optimize_for_inference.")
        self.pipe = pipe
        self.family = pipeline_family(pipe)
        self._model = model
        self._prefix = "transformer" if self.family is Family.FLUX2 else "unet"  # the key prefix of LoRA files
        self.max_rank = max_rank
        self.target_modules = tuple(target_modules) if target_modules is not None else default_lora_targets(pipe)
        self.merge = merge
        self._active: Path | None = None
        self._scale = 1.0
        self._base_weights: dict[str, Any] = {}  # layer name -> its weight before any merge (filled lazily)
        self._text_adapter: str | None = None

        # 2. An all-zero LoRA on every targeted layer: the slot's structure exists from the start.
        zero: dict[str, Any] = {}
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and any(
                name == target or name.endswith("." + target) for target in self.target_modules
            ):
                zero[f"{self._prefix}.{name}.lora_A.weight"] = torch.zeros(max_rank, module.in_features)
                zero[f"{self._prefix}.{name}.lora_B.weight"] = torch.zeros(module.out_features, max_rank)
        if not zero:
            raise ValueError(f"No {self._prefix} layer matches target_modules {self.target_modules}.")
        pipe.enable_lora_hotswap(target_rank=max_rank)
        pipe.load_lora_weights(zero, adapter_name=SLOT_ADAPTER)
        # An inference pipeline has nothing trainable; keeping it so also keeps a compiled graph's guards stable.
        model.requires_grad_(False)
        self._layers = {
            name: module
            for name, module in model.named_modules()
            if SLOT_ADAPTER in getattr(module, "lora_A", {}) and hasattr(module, "base_layer")
        }

    @property
    def active(self) -> Path | None:
        """The LoRA file swapped in now, or None when the slot holds zeros."""
        return self._active

    def swap_in(self, lora_path: Path, *, scale: float = 1.0) -> float:
        """Copy the LoRA at ``lora_path`` into the slot (replacing whatever was there); return the seconds taken.

        ``scale`` weakens (or strengthens) the LoRA as it is merged: the face pass renders at moderate strength.
        """
        started = time.perf_counter()
        lora_path = Path(lora_path)
        if not lora_path.is_file():
            raise FileNotFoundError(f"No LoRA weights at '{lora_path}'.")
        if scale != 1.0 and not self.merge:
            # Unmerged, the scale lives in peft's hot-swapped tensors, which the compiled graph reads as they are.
            raise ValueError(f"A LoRA scale of {scale} needs a merging slot (merge=True).")
        pipe = self.pipe
        loaded = pipe.lora_state_dict(str(lora_path.parent), weight_name=lora_path.name, return_lora_metadata=True)
        # SDXL's loader also returns kohya-style network alphas; FLUX.2's keeps alpha in the metadata only.
        state, alphas, metadata = loaded if len(loaded) == 3 else (loaded[0], None, loaded[1])
        ranks = [tensor.shape[1] for key, tensor in state.items() if _is_up_weight(key) and tensor.ndim == 2]
        if ranks and max(ranks) > self.max_rank:
            raise ValueError(f"The LoRA '{lora_path.name}' has rank {max(ranks)}, above the slot's {self.max_rank}.")
        if self._text_adapter is not None:
            remove_adapter(pipe, self._text_adapter)
            self._text_adapter = None
        if not self.merge:  # peft hot-swaps no merged adapter; a merge writes every slot layer from W0 itself
            self._unmerge()
        self._active = lora_path
        self._scale = scale
        try:
            denoiser_state = {key: value for key, value in state.items() if key.startswith(self._prefix + ".")}
            if self.merge:
                self._merge(self._factors(denoiser_state, alphas, metadata, lora_path.name))
            elif self.family is Family.FLUX2:
                pipe.load_lora_into_transformer(
                    denoiser_state,
                    transformer=self._model,
                    adapter_name=SLOT_ADAPTER,
                    _pipeline=pipe,
                    hotswap=True,
                    metadata=metadata,
                )
            else:
                pipe.load_lora_into_unet(
                    denoiser_state,
                    network_alphas=alphas,
                    unet=self._model,
                    adapter_name=SLOT_ADAPTER,
                    _pipeline=pipe,
                    hotswap=True,
                    metadata=metadata,
                )
            text_state = {key: value for key, value in state.items() if key.startswith("text_encoder")}
            if text_state:
                self._text_adapter = new_adapter_name("slot-text")
                for component in TEXT_ENCODER_COMPONENTS:
                    pipe.load_lora_into_text_encoder(
                        text_state,
                        network_alphas=alphas,
                        text_encoder=getattr(pipe, component),
                        prefix=component,
                        adapter_name=self._text_adapter,
                        _pipeline=pipe,
                        metadata=metadata,
                    )
        except Exception:
            self.clear()  # half a user's weights must not stay behind either
            raise
        return time.perf_counter() - started

    @property
    def merged(self) -> bool:
        """Whether the slot's LoRA is folded into the base weights now."""
        return any(SLOT_ADAPTER in layer.merged_adapters for layer in self._layers.values())

    @contextmanager
    def merged_base(self) -> Iterator[None]:
        """The slot merged while it holds zeros: the base renders through the path a user's request takes.

        A worker warms its compiled graphs inside this. On a slot without ``merge`` it changes nothing.
        """
        if self._active is not None:
            raise ValueError(f"The slot holds '{self._active.name}'; clear it before rendering the base through it.")
        if not self.merge:
            yield
            return
        self._merge({})
        try:
            yield
        finally:
            self.clear()

    def _factors(
        self, state: dict[str, Any], alphas: dict[str, float] | None, metadata: dict[str, Any] | None, file_name: str
    ) -> dict[str, tuple[Any, Any, float]]:
        """Slot layer name -> (B, A, scaling) from the denoiser part of a LoRA file (``lora_merge.lora_factors``).

        Raises ``ValueError`` naming the file for what a merge cannot hold and for layers the slot does not cover."""
        factors = lora_factors(state, alphas, metadata, file_name, prefix=self._prefix)
        foreign = sorted(set(factors) - set(self._layers))
        if foreign:
            raise ValueError(
                f"The LoRA '{file_name}' has {len(foreign)} layers the slot does not cover (first: {foreign[0]}); "
                f"the slot covers {', '.join(self.target_modules)}."
            )
        return factors

    def _unmerge(self) -> None:
        import torch

        merged = [name for name, layer in self._layers.items() if SLOT_ADAPTER in layer.merged_adapters]
        if not merged:
            return
        with torch.no_grad():
            # Exact: W0 itself, not W - delta. One multi-tensor copy for every layer.
            torch._foreach_copy_(
                [self._layers[name].base_layer.weight for name in merged], [self._base_weights[name] for name in merged]
            )
        for name in merged:
            self._layers[name].merged_adapters.remove(SLOT_ADAPTER)
        _requantize([self._layers[name].base_layer for name in merged])

    def _merge(self, factors: dict[str, tuple[Any, Any, float]]) -> None:
        """W = W0 + B·A·scaling (``_factors``) on every slot layer, W0 where ``factors`` has none.

        The factors travel as the file holds them, in one copy per dtype, before any merge kernel is queued, and are
        stacked (and padded) chunk by chunk on the device: the host only gathers them once, into page-locked memory
        the copy reads without waiting for the device (the merge was three quarters of a swap, mostly host work:
        BENCHMARKS.md, 2026-12-02 fifth session).
        """
        import torch

        with torch.no_grad():
            if not self._base_weights:
                self._base_weights = {
                    name: layer.base_layer.weight.detach().clone() for name, layer in self._layers.items()
                }
            shapes: dict[tuple[int, ...], list[str]] = {}
            for name in factors:
                shapes.setdefault(tuple(self._base_weights[name].shape), []).append(name)
            chunks = [
                names[first : first + MERGE_CHUNK]
                for names in shapes.values()
                for first in range(0, len(names), MERGE_CHUNK)
            ]
            device = next(iter(self._base_weights.values())).device
            ordered = [name for names in chunks for name in names]
            # Each layer's scale as a tensor too, in the same copy: a small copy of its own from pageable memory
            # would make the host wait for the device.
            host = [
                tensor
                for name in ordered
                for tensor in (*factors[name][:2], torch.tensor(factors[name][2] * self._scale, dtype=torch.float32))
            ]
            moved = iter(to_device(host, device))
            on_device = {name: (next(moved), next(moved), next(moved)) for name in ordered}
            unchanged = [name for name in self._layers if name not in factors]
            if unchanged:
                torch._foreach_copy_(
                    [self._layers[name].base_layer.weight for name in unchanged],
                    [self._base_weights[name] for name in unchanged],
                )
            for names in chunks:
                up, down, scales = stacked_factors(names, on_device)
                weights = [self._layers[name].base_layer.weight for name in names]
                # Float32 from the untouched copies: the result is the same whichever users came before.
                base = torch.stack([self._base_weights[name] for name in names]).float()
                merged = torch.baddbmm(base, up.float() * scales, down.float())
                torch._foreach_copy_(weights, list(merged.to(weights[0].dtype).unbind(0)))
        _requantize([layer.base_layer for layer in self._layers.values()])
        for layer in self._layers.values():
            if SLOT_ADAPTER not in layer.merged_adapters:
                # peft's forward runs just the base layer for a merged adapter.
                layer.merged_adapters.append(SLOT_ADAPTER)

    def clear(self) -> float:
        """Zero the slot (and drop any text-encoder part), so no user's weights stay in memory; return seconds."""
        import torch

        started = time.perf_counter()
        self._unmerge()
        if not self.merge:  # a merging slot never writes its LoRA layers: they hold zeros from the start
            with torch.no_grad():
                for name, param in self._model.named_parameters():
                    if f".{SLOT_ADAPTER}." in name:
                        param.zero_()  # in place: a compiled UNet keeps using the same tensors
        if self._text_adapter is not None:
            remove_adapter(self.pipe, self._text_adapter)
            self._text_adapter = None
        self._active = None
        self._scale = 1.0
        return time.perf_counter() - started


def _requantize(base_layers: list[Any]) -> None:
    """FP8 rendering layers render from quantized copies of their weights: bring those up to date, all at once."""
    from pipeline.diffusion.float8 import Float8Linear, refresh_float8
    from pipeline.diffusion.float8_conv import Float8Conv2d

    fp8 = [layer for layer in base_layers if isinstance(layer, Float8Linear)]
    if fp8:
        # Not training's transposed copies: a merged LoRA never trains, and ``clear`` restores the base they hold
        # exactly, so a request does not pay to quantize them twice more.
        refresh_float8(fp8, training_copies=False)
    for conv in base_layers:  # a LoRA over the ResNets' convolutions (the slot's own targets are attention's)
        if isinstance(conv, Float8Conv2d):
            conv.refresh()


def _is_up_weight(key: str) -> bool:
    return any(part in key for part in (".lora_B.", ".lora.up.", ".lora_up.", ".lora_linear_layer.up."))
