"""``python -m bench.benchmark_slot``: what swapping a user's LoRA into a worker's slot costs, stage by stage.

On SDXL's architecture (random weights) with the worker's slot (rank ``HEADSHOT_LORA_RANK``'s default, merging), a
rank-16 LoRA saved as the worker's training saves one: a swap and a clear together, then ``swap_in`` (read the file,
merge) and ``clear`` (restore the base) apart, each the median of several, the device synchronised around each.

The baseline, on a second pipeline in the same process, is the slot as it was before it read files itself: diffusers'
hot-swap copies the file into the slot's LoRA layers, then each layer is merged on its own (``hotswap_baseline``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import benchmark_pipeline, measured, report

__all__ = ["hotswap_baseline", "main", "slot_stages"]


def slot_stages(pipe: Any, *, rank: int, repeats: int) -> dict[str, Any]:
    """Median seconds of each stage of a merged swap and of the clear after it."""
    from bench.benchmark_request import user_lora_file
    from jobs.settings import Settings
    from pipeline.diffusion.lora_slot import LoraSlot

    device = str(pipe.unet.device)
    slot = LoraSlot(pipe, max_rank=Settings().lora_rank)
    folder = Path(tempfile.mkdtemp(prefix="bench-slot-"))
    lora = user_lora_file(slot, folder, rank=rank)

    def median(call: Callable[[], Any], before: Callable[[], Any] = lambda: None) -> float:
        before()
        call()  # first call: lazy copies of the base weights, allocator warm-up
        seconds = []
        for _ in range(repeats):
            before()  # untimed
            with measured(device) as stage:
                call()
            seconds.append(stage.seconds)
        return round(statistics.median(seconds), 4)

    def swap_and_clear() -> None:
        slot.swap_in(lora)
        slot.clear()

    figures: dict[str, Any] = {
        "layers": len(slot._layers),
        "slot_rank": slot.max_rank,
        "lora_rank": rank,
        "lora_mib": round(lora.stat().st_size / 2**20, 1),
        "swap_in_and_clear_s": median(swap_and_clear),
    }
    figures["swap_in_s"] = median(lambda: slot.swap_in(lora), before=slot.clear)
    figures["clear_s"] = median(slot.clear, before=lambda: slot.swap_in(lora))
    slot.clear()
    figures["swap_in_split"] = swap_split(pipe, slot, lora, repeats=repeats)
    return figures


def swap_split(pipe: Any, slot: Any, lora: Path, *, repeats: int) -> dict[str, float]:
    """Median seconds of ``swap_in``'s three parts, as it runs them (the slot's own steps, called one by one): read
    the file (diffusers' ``lora_state_dict``), the factors and scales (host), the merge (stacking on the host, one
    copy to the device, the batched products)."""
    device = str(pipe.unet.device)
    seconds: dict[str, list[float]] = {"read_file_s": [], "factors_s": [], "merge_s": []}
    for _ in range(repeats + 1):  # the first is a warm-up
        slot.clear()
        with measured(device) as read:
            state, alphas, metadata = pipe.lora_state_dict(
                str(lora.parent), weight_name=lora.name, return_lora_metadata=True
            )
        with measured(device) as factoring:
            factors = slot._factors(
                {key: value for key, value in state.items() if key.startswith("unet.")}, alphas, metadata, lora.name
            )
        with measured(device) as merging:
            slot._merge(factors)
        for key, stage in zip(seconds, (read, factoring, merging), strict=True):
            seconds[key].append(stage.seconds)
    slot.clear()
    return {key: round(statistics.median(values[1:]), 4) for key, values in seconds.items()}


def hotswap_baseline(pipe: Any, *, rank: int, repeats: int) -> dict[str, Any]:
    """The same stages the way the slot did them before: ``swap_in`` on a non-merging slot (diffusers' hot-swap into
    the slot's LoRA layers), then per layer W = W0 + B·A·scaling in float32 from a kept copy; the clear copies each
    W0 back and zeroes the slot's layers."""
    import torch

    from bench.benchmark_request import user_lora_file
    from jobs.settings import Settings
    from pipeline.diffusion.lora_slot import SLOT_ADAPTER, LoraSlot

    device = str(pipe.unet.device)
    slot = LoraSlot(pipe, max_rank=Settings().lora_rank, merge=False)
    lora = user_lora_file(slot, Path(tempfile.mkdtemp(prefix="bench-slot-")), rank=rank)
    bases = {name: layer.base_layer.weight.detach().clone() for name, layer in slot._layers.items()}

    def swap_and_merge() -> None:
        slot.swap_in(lora)
        with torch.no_grad():
            for name, layer in slot._layers.items():
                delta = layer.lora_B[SLOT_ADAPTER].weight.float() @ layer.lora_A[SLOT_ADAPTER].weight.float()
                layer.base_layer.weight.copy_(bases[name].float() + delta * layer.scaling[SLOT_ADAPTER])

    def clear() -> None:
        with torch.no_grad():
            for name, layer in slot._layers.items():
                layer.base_layer.weight.copy_(bases[name])
        slot.clear()

    def median(call: Callable[[], Any], before: Callable[[], Any]) -> float:
        seconds = []
        for _ in range(repeats + 1):
            before()
            with measured(device) as stage:
                call()
            seconds.append(stage.seconds)
        return round(statistics.median(seconds[1:]), 4)

    return {"swap_in_s": median(swap_and_merge, before=clear), "clear_s": median(clear, before=swap_and_merge)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_slot", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--rank", type=int, default=16, help="the user's LoRA rank")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from pipeline.diffusion.loading import pick_device

    device = pick_device()
    pipe = benchmark_pipeline(args.model, device)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "slot": slot_stages(pipe, rank=args.rank, repeats=args.repeats),
    }
    print(json.dumps(results), flush=True)
    del pipe
    results["hotswap_baseline"] = hotswap_baseline(
        benchmark_pipeline(args.model, device), rank=args.rank, repeats=args.repeats
    )
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
