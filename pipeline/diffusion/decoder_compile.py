"""The VAE decoder's compile in a process of its own, while a worker's start compiles everything else.

A worker compiles its decoder by regions (``acceleration.compile_decoder_regions``): small graphs that took 44.7 s of
an H200 (BENCHMARKS.md 2026-12-05 tenth session, single images compiled too then), and that a start compiled on its
one Python thread after training's graphs and before the UNet's renders. The decoder needs nothing else the start
sets up: no LoRA slot, no FP8 layer, no calibration. So a second process can load the VAE alone and compile the same
graphs into the same kernel folder (``HEADSHOT_COMPILE_CACHE_DIR``) at the same time. When the worker reaches its
decoder, inductor's caches then hand it each graph instead of compiling it again.

The cache's keys only match if both processes make the same graphs. Dynamo's graphs depend on the order of the shapes
it first sees: a square traced first ties height to width. So both processes call
``warm_decoder`` with one list of shapes (``decode_shapes``), on a VAE set up alike (``serving_decoder``), and the
worker's renders afterwards decode only shapes those graphs take.

Run as ``python -m pipeline.diffusion.decoder_compile --model M ... --shapes JSON``; ``jobs.worker.decoder_process``
starts it. It prints one JSON line: seconds, graphs, inductor's cache hits and misses, and the GPU memory it reserved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.styles import Style

__all__ = ["decode_shapes", "main", "serving_decoder", "warm_decoder"]

Shape = tuple[int, int, int, int]


def decode_shapes(
    pipe: Any, looks: Sequence[Style], batch_sizes: Sequence[int], preview_batch_sizes: Iterable[int] = ()
) -> list[Shape]:
    """The latent shapes (batch, channels, height, width) a worker's start decodes through the decoder's graphs, in
    the order its renders reach them (``serving.warm_for_serving``): for each of ``looks`` in its order,
    ``batch_sizes`` in theirs (on klein, the renders from references in ``preview_batch_sizes`` too). Each shape
    once. Single images (an upscale, the face pass, a batch of one) decode eagerly
    (``acceleration.compile_decoder_regions``): none of theirs."""
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.references import supports_references

    config = pipe.vae.config
    factor = 2 ** (len(config.block_out_channels) - 1)

    def latents(batch: int, size: tuple[int, int]) -> Shape:
        return (batch, config.latent_channels, size[1] // factor, size[0] // factor)

    references = supports_references(pipe)
    shapes: list[Shape] = []
    for look in looks:
        width, height = headshot_size(pipe, look.aspect)
        shapes += [latents(batch, (width, height)) for batch in batch_sizes]
        if references:
            shapes += [latents(batch, (width, height)) for batch in preview_batch_sizes]
    shapes = [shape for shape in shapes if shape[0] > 1]
    return list(dict.fromkeys(shapes))


def serving_decoder(vae: Any, *, gpu: bool | None = None) -> None:
    """Set ``vae``'s decoder up as a worker's start does on its device before compiling it: on CUDA (``gpu``, unset:
    where ``vae`` is), its norms through ``headshot::group_norm`` (``model_setup.use_group_norm_operators``),
    channels-last (``acceleration.gpu_layout``) and TF32 on; nothing on a CPU. Graphs guard on each, so the decoder's
    process and the worker must agree."""
    from pipeline.diffusion.acceleration import decoder_layout, use_fast_maths_on
    from pipeline.diffusion.group_norm import use_group_norm_operator

    on_gpu = vae.device.type == "cuda" if gpu is None else gpu
    if on_gpu:
        use_group_norm_operator(vae.decoder, no_grad=True)
        decoder_layout(vae)
        use_fast_maths_on(vae.device)


def warm_decoder(vae: Any, shapes: Iterable[Shape], *, backend: str = "inductor") -> int:
    """Compile ``vae``'s decoder by regions (unless compiled already) and decode zeros at each of ``shapes``, in
    order, as a pipeline decodes its latents (gradients off); return how many shapes."""
    import torch

    from pipeline.diffusion.acceleration import compile_decoder_regions

    compile_decoder_regions(vae, backend=backend)
    decoded = 0
    with torch.no_grad():
        for shape in shapes:
            vae.decode(torch.zeros(shape, device=vae.device, dtype=vae.dtype), return_dict=False)
            decoded += 1
    return decoded


def main(argv: Sequence[str] | None = None) -> int:
    """Load ``--model``'s VAE, compile its decoder into ``--compile-cache-dir`` on ``--shapes``, print a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", required=True, help="as HEADSHOT_MODEL: 'tiny', a folder or a hub id")
    parser.add_argument("--model-cache-dir", type=Path, required=True, help="where the worker's models are")
    parser.add_argument("--compile-cache-dir", type=Path, required=True, help="the worker's kernel folder")
    parser.add_argument("--device", required=True)
    parser.add_argument("--dtype", required=True, help="the worker's VAE dtype, e.g. bfloat16")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--shapes", required=True, help="JSON list of [batch, channels, height, width]")
    args = parser.parse_args(argv)
    shapes = [tuple(int(size) for size in shape) for shape in json.loads(args.shapes)]
    # Before torch loads: inductor reads its folder from here, and importing dynamo writes its default here if unset.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(args.compile_cache_dir.resolve())
    from torch._dynamo.utils import counters

    from pipeline.diffusion.loading import load_vae

    started = time.perf_counter()
    vae = load_vae(args.model, device=args.device, dtype=args.dtype, cache_dir=args.model_cache_dir)
    serving_decoder(vae)
    loaded = time.perf_counter()
    warm_decoder(vae, shapes, backend=args.backend)  # type: ignore[arg-type]  # four ints each, parsed above
    done = {
        "load_s": round(loaded - started, 1),
        "compile_s": round(time.perf_counter() - loaded, 1),
        "graphs": int(counters["stats"]["unique_graphs"]),
        "cache_hits": int(counters["inductor"]["fxgraph_cache_hit"]),
        "cache_misses": int(counters["inductor"]["fxgraph_cache_miss"]),
        "gpu_peak_gib": _gpu_peak_gib(vae.device),
    }
    print(json.dumps(done), flush=True)
    return 0


def _gpu_peak_gib(device: Any) -> float | None:
    """What this process reserved of the GPU at most (the worker's start shares the card with it); None off CUDA."""
    import torch

    return round(torch.cuda.max_memory_reserved(device) / 2**30, 2) if device.type == "cuda" else None


if __name__ == "__main__":
    sys.exit(main())
