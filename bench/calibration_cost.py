"""``python -m bench.calibration_cost``: what FP8 rendering's calibration costs a worker's start, the rendering slot's
zero LoRA run at every layer it covers against the slot merged (``serving.calibrated_float8``'s ``slot``).

A cold start calibrates with eager renders (8 looks, 10 steps each), which wait on the host's launches on a GPU
(BENCHMARKS.md). The slot holds zeros then, and unmerged its LoRA adds two products, a scale
and an add to each layer it covers. For each way: the operators one calibrating UNet call dispatches (at a small
latent size: the count does not depend on it) and the whole calibration's seconds, ways alternating, on one model set
up as a worker's start sets it up (the slot first, then the FP8 layers). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.diffusion.float8 import use_float8_linears
from pipeline.diffusion.float8_scales import calibrate_float8
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.serving import calibrated_float8
from pipeline.styles import STYLES

__all__ = ["calibration_ops", "main"]

WAYS = ("zero LoRA run", "slot merged")


class _Count(TorchDispatchMode):
    """Counts the operators dispatched inside it (each one a kernel launch or more on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def calibration_ops(pipe: Any, slot: LoraSlot | None) -> int:
    """Operators one calibrating call of ``pipe``'s UNet dispatches, at CFG batch 2 and 16x16 latents, with ``slot``
    merged (None: its zero LoRA runs)."""
    unet = pipe.unet
    config = unet.config
    device, dtype = unet.device, unet.dtype
    latents = torch.randn(2, config.in_channels, 16, 16, device=device, dtype=dtype)
    text = torch.randn(2, 77, config.cross_attention_dim, device=device, dtype=dtype)
    pooled = torch.randn(2, config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim)
    added = {"text_embeds": pooled.to(device, dtype), "time_ids": torch.randn(2, 6, device=device, dtype=dtype)}
    count = _Count()

    def one_call() -> None:
        with count:
            unet(latents, torch.tensor([500], device=device), text, added_cond_kwargs=added)

    with slot.merged_base() if slot is not None else nullcontext():
        calibrate_float8(unet, one_call)  # its scales are set again by each timed calibration
    return count.ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="HEADSHOT_MODEL: 'tiny', 'random-sdxl', a folder or hub id")
    parser.add_argument("--model-cache-dir", type=Path, default=Path(".cache/models"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", help="the model's dtype (default: bfloat16 on CUDA, the checkpoint's on a CPU)")
    parser.add_argument("--runs", type=int, default=3, help="timed calibrations a way, ways alternating (0: none)")
    parser.add_argument("--slot-rank", type=int, default=64, help="the slot's rank (HEADSHOT_LORA_RANK's ceiling)")
    args = parser.parse_args(argv)
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else None)
    pipe = load_base_pipeline(args.model, device=args.device, dtype=dtype, cache_dir=args.model_cache_dir)
    made = LoraSlot(pipe, max_rank=args.slot_rank)  # as a worker's start: the slot first, then the FP8 layers
    use_float8_linears(pipe.unet, scaling="static")
    slots = {"zero LoRA run": None, "slot merged": made}  # one model: the ways differ only in the slot's state
    result: dict[str, Any] = {"model": args.model, "device": args.device, "dtype": str(pipe.unet.dtype), "ways": {}}
    for way, slot in slots.items():
        result["ways"][way] = {"ops_a_unet_call": calibration_ops(pipe, slot), "seconds": []}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            for way in WAYS if run % 2 == 0 else reversed(WAYS):
                started = time.perf_counter()
                # A new scales file each time: every run calibrates.
                calibrated_float8(pipe, STYLES.values(), Path(folder) / f"{run}-{way}.json", slots[way])
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                result["ways"][way]["seconds"].append(round(time.perf_counter() - started, 2))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
