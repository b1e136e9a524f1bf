"""``python -m bench.saved_activations``: what one UNet training call keeps for its backward, with the ResNet blocks
as diffusers runs them and through ``headshot::group_norm_silu`` (``HEADSHOT_TRAIN_FUSED_RESNETS``).

The UNet is built from its config on the meta device (no weights, no GPU, seconds), with the worker's LoRA on the
attention projections and the GEGLU and group norm operators its ``TrainingSlot`` trains through; the LoRA in bf16,
as autocast runs a worker's (the meta device has no autocast, which ``headshot::lora_linear`` and peft's skipped
casts need, so the LoRA trains through peft's forward here); one call's
forward runs under autograd's saved-tensor hooks, which see every tensor kept for the backward, each storage counted
once. Attention runs torch's memory-efficient operator, as a GPU's fused attention keeps its inputs, output and
row statistics: on the meta device ``scaled_dot_product_attention`` would take torch's maths path, which keeps every
attention probability, ~100 GiB more at the 3:4 bucket's batch 8.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "saved_for_backward"]


def _unet_config(model: str) -> dict[str, Any]:
    if model == "sdxl":
        from pipeline.diffusion.sdxl_config import SDXL_UNET_CONFIG

        return dict(SDXL_UNET_CONFIG)
    from bench.measure import benchmark_pipeline

    return dict(benchmark_pipeline("tiny", "cpu").unet.config)


@contextlib.contextmanager
def _fused_attention() -> Iterator[None]:
    """``functional.scaled_dot_product_attention`` (diffusers' attention processors call it) through torch's
    memory-efficient attention operator, whatever the device: what it keeps for the backward is a fused kernel's."""
    import torch
    from torch.nn import functional

    plain = functional.scaled_dot_product_attention

    def fused(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
              is_causal: bool = False, scale: float | None = None, **_: Any) -> Any:  # fmt: skip
        efficient = torch.ops.aten._scaled_dot_product_efficient_attention
        return efficient(query, key, value, attn_mask, True, dropout_p, is_causal, scale=scale)[0]

    functional.scaled_dot_product_attention = fused  # type: ignore[assignment]
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = plain


def saved_for_backward(model: str, *, batch: int, latent_size: tuple[int, int]) -> list[dict[str, Any]]:
    """Bytes and tensors one training call of ``model``'s UNet keeps for its backward at ``batch`` latents of
    ``latent_size`` (height, width): diffusers' ResNet blocks first, then the fused ones."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from pipeline.diffusion.adapters import UNET_ATTENTION_TARGETS
    from pipeline.diffusion.geglu import use_geglu_operator
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.resnet_glue import TRAIN, use_fused_resnets

    config = _unet_config(model)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config).to(torch.bfloat16)
    unet.requires_grad_(False)
    lora = LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian", target_modules=list(UNET_ATTENTION_TARGETS))
    unet.add_adapter(lora)
    for name, param in unet.named_parameters():
        param.requires_grad_("lora_" in name)
    use_geglu_operator(unet)
    use_group_norm_operator(unet)
    unet.train()
    text_embeds = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    with torch.device("meta"):
        inputs = {
            "sample": torch.empty(batch, unet.config.in_channels, *latent_size, dtype=torch.bfloat16),
            "timestep": torch.full((batch,), 500),
            "encoder_hidden_states": torch.empty(batch, 77, unet.config.cross_attention_dim, dtype=torch.bfloat16),
            "added_cond_kwargs": {
                "text_embeds": torch.empty(batch, text_embeds, dtype=torch.bfloat16),
                "time_ids": torch.empty(batch, 6, dtype=torch.bfloat16),
            },
        }

    def one_call(label: str, fused: int) -> dict[str, Any]:
        kept: dict[int, int] = {}  # storage -> bytes: a tensor kept by several operators counts once

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            kept[storage._cdata] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _fused_attention():
            unet(**inputs)
        return {"variant": label, "fused_resnet_blocks": fused, "gib": round(sum(kept.values()) / 2**30, 3),
                "tensors": len(kept)}  # fmt: skip

    plain = one_call("diffusers' ResNet blocks", 0)
    fused = one_call("ResNet blocks through headshot::group_norm_silu", use_fused_resnets(unet, calls=TRAIN))
    fused["gib_less"] = round(plain["gib"] - fused["gib"], 3)
    return [plain, fused]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.saved_activations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--latents", default="148x112", help="HxW of the latents (148x112: the 3:4 bucket a phone's selfies train in)"
    )
    parser.add_argument("--out", type=Path, help="also write the results here, as JSON")
    args = parser.parse_args(argv)
    height, _, width = args.latents.partition("x")
    if not (height.isdigit() and width.isdigit()):
        parser.error(f"--latents must be HxW in latent pixels, e.g. 148x112; got {args.latents!r}")
    from bench.measure import describe_run

    results = {
        **describe_run(args.model),
        "device": "meta",
        "batch": args.batch,
        "latents": [int(height), int(width)],
        "saved_for_backward": saved_for_backward(args.model, batch=args.batch, latent_size=(int(height), int(width))),
    }
    text = json.dumps(results)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
