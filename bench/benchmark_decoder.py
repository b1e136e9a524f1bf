"""``python -m bench.benchmark_decoder``: the VAE decode at the shapes a worker serves, eager, compiled as the
worker compiles it (by regions: ``acceleration.compile_decoder_regions``) and the ways before.

Shapes, from the linkedin look's size: a request's batch (``--batch``), an upscale (one image at twice the size) and
the face pass (one native square). Each way starts from a fresh dynamo, so its first call of a shape includes what
that shape compiles (inductor's on-disk cache is whatever the machine has: give the run an empty
``TORCHINDUCTOR_CACHE_DIR`` for cold compiles; the ways run in the order of ``WAYS``, so a later way finds what an
earlier one compiled of the same graphs). Then ``--repeats`` decodes per shape, median, and the graphs each way
built. Every way's images are compared with eager's (largest difference, in 0-1 pixel units).

The worker's way compiles the decoder's ResNet blocks and upsamplers, each with every size dynamic, the rest eager
(its attention, its first and last convolutions), its norms through ``headshot::group_norm`` (opaque to inductor:
it fuses the rest of each block around them): one small graph per block shape family, single images through the same
blocks eagerly (compiled, they doubled the graphs: the way "regions with single images compiled"). The ways before
compiled the whole decoder as one graph for batches, single images eager or on a second graph, with torch's norms
(which copy a channels-last input to NCHW and back) or the operator's. Every way but the two NCHW ones lays the
decoder out channels-last, as a worker does (``gpu_layout``); those two compile it NCHW, the second with its group
norms through the operator (as a GPU worker's encoder runs them): whether the operator's norms pay for cuDNN's
layout conversions around NCHW convolutions. ``--ways`` picks some (the first is the others' reference).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench.measure import benchmark_pipeline, describe_run, graph_count, list_recorder, measured

__all__ = ["WAYS", "Way", "decoder_shapes", "main"]


class Way(NamedTuple):
    single_images: str | None  # the whole decoder as one graph, single images "eager" or "compiled" on a second one;
    # by regions (``compile_decoder_regions``): "regions, single images compiled" or "regions, single images eager"
    # (the worker's); None: the decoder eager (the plain pipeline's)
    channels_last: bool  # the decoder's layout (a worker's: channels-last, ``gpu_layout``), else NCHW
    operator_norms: bool  # its group norms through ``headshot::group_norm`` (either layout), else torch's


WAYS: dict[str, Way] = {
    "eager": Way(None, True, False),
    "single images compiled": Way("compiled", True, False),
    # The worker's until 2026-12-05 (ninth session): torch's norms, which copy a channels-last input to NCHW and back.
    "torch's norms": Way("eager", True, False),
    # The worker's until 2026-12-05 (tenth session): its norms through the operator's NHWC kernels
    # (``model_setup.use_group_norm_operators``), the whole decoder one graph for batches, single images eager.
    "one graph, the operator's norms": Way("eager", True, True),
    "decoder regions with torch's norms": Way("regions, single images compiled", True, False),
    # The worker's until 2026-12-05 (thirteenth session): its ResNet blocks and upsamplers compiled, their norms the
    # operator's, single images on graphs of their own (dynamo specialises a batch of one).
    "regions with single images compiled": Way("regions, single images compiled", True, True),
    # The same blocks, single images through them eagerly: half the graphs.
    "worker": Way("regions, single images eager", True, True),
    # The encoder's way (NCHW, its norms through the operator), compiled as one graph.
    "NCHW with torch's norms": Way("eager", False, False),
    "NCHW with the operator's norms": Way("eager", False, True),
}


def decoder_shapes(pipe: Any, *, batch: int) -> dict[str, tuple[int, int, int]]:
    """(batch, latent height, latent width) of the decodes a worker serves, by what makes them."""
    from pipeline.diffusion.generation import headshot_size
    from pipeline.styles import STYLES

    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    width, height = headshot_size(pipe, STYLES["linkedin"].aspect)
    side, _ = headshot_size(pipe, (1, 1))
    return {
        f"request, batch {batch}": (batch, height // factor, width // factor),
        "upscale, one image at twice the size": (1, 2 * height // factor, 2 * width // factor),
        "face pass, one native square": (1, side // factor, side // factor),
    }


def run_ways(
    pipe: Any,
    shapes: dict[str, tuple[int, int, int]],
    *,
    record: Any,
    repeats: int,
    backend: str,
    ways: list[str] | None = None,
) -> None:
    """Time each way of ``ways`` (default: every way of ``WAYS``) at every shape of ``shapes``; ``record`` each
    figure. The first way's images are the others' reference (eager's, by default)."""
    import torch

    from pipeline.diffusion.acceleration import compile_decoder_regions
    from pipeline.diffusion.group_norm import use_group_norm_operator

    vae, device = pipe.vae, str(pipe.vae.device)
    vae.eval()
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = {
        name: torch.randn(batch, vae.config.latent_channels, height, width, generator=generator).to(
            device=device, dtype=vae.dtype
        )
        for name, (batch, height, width) in shapes.items()
    }
    plain = vae.decode
    reference: dict[str, Any] = {}
    for way in ways or list(WAYS):
        single_images, channels_last, operator_norms = WAYS[way]
        _uncompile(vae)  # no way's compiled regions left for the next
        for part in (vae.decoder, getattr(vae, "post_quant_conv", None)):  # as ``gpu_layout`` lays them out
            if part is not None:
                part.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        use_group_norm_operator(vae.decoder, enabled=operator_norms, no_grad=True)
        decode = plain
        if single_images is not None and single_images.startswith("regions"):
            compiled = single_images == "regions, single images compiled"
            compile_decoder_regions(vae, backend=backend, single_images=compiled)
        elif single_images is not None:
            decode = _one_graph(plain, backend=backend, single_images=single_images)
        graphs_before, compile_started = graph_count(), time.perf_counter()
        for name, batch_latents in latents.items():
            with torch.no_grad(), measured(device) as first:
                images = decode(batch_latents, return_dict=False)[0]
            seconds = []
            for _ in range(repeats):
                with torch.no_grad(), measured(device) as timed:
                    decode(batch_latents, return_dict=False)
                seconds.append(timed.seconds)
            pixels = (images.float() / 2 + 0.5).clamp(0, 1)
            reference.setdefault(name, pixels)
            record(
                {
                    "way": way,
                    "shape": name,
                    "latents": list(batch_latents.shape),
                    "first_call_s": round(first.seconds, 2),
                    "decode_s": round(statistics.median(seconds), 4),
                    "peak_gib": round(timed.peak_gib, 2),
                    "max_difference_vs_eager": round(float((pixels - reference[name]).abs().max()), 4),
                }
            )
        record(
            {
                "way": way,
                "graphs_compiled": graph_count() - graphs_before,
                "first_calls_s": round(time.perf_counter() - compile_started, 1),
            }
        )
    _uncompile(vae)  # the VAE as it came
    use_group_norm_operator(vae.decoder, enabled=False)


def _uncompile(vae: Any) -> None:
    """Every compiled module of ``vae`` back to eager, and dynamo's caches emptied: the next compile starts cold."""
    import torch._dynamo

    for module in vae.modules():
        module._compiled_call_impl = None
    torch._dynamo.reset()


def _one_graph(decode: Any, *, backend: str, single_images: str) -> Any:
    """``decode`` compiled as the worker compiled it until 2026-12-05: the whole decoder one graph for latents of any
    batch of two or more and any size (batch, height and width marked dynamic, the channels fixed), single images
    ``"eager"`` or ``"compiled"`` on a second graph (dynamo specialises a batch of one)."""
    import torch

    compiled = torch.compile(decode, backend=backend)

    def decode_any(latents: Any, *args: Any, **kwargs: Any) -> Any:
        if single_images == "eager" and latents.shape[0] == 1:
            return decode(latents, *args, **kwargs)
        for dim in (0, 2, 3):
            torch._dynamo.maybe_mark_dynamic(latents, dim)
        return compiled(latents, *args, **kwargs)

    return decode_any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_decoder", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--batch", type=int, default=4, help="a request's batch (default 4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend ('eager' traces only)")
    parser.add_argument("--ways", help=f"comma-separated, from: {', '.join(WAYS)} (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    ways = [way.strip() for way in args.ways.split(",")] if args.ways else None
    unknown = sorted(set(ways or []) - set(WAYS))
    if unknown:
        parser.error(f"--ways names {', '.join(unknown)}; pick from: {', '.join(WAYS)}")

    from pipeline.diffusion.loading import pick_device

    pipe = benchmark_pipeline(args.model, pick_device())
    results: dict[str, Any] = {**describe_run(args.model), "vae_dtype": str(pipe.vae.dtype)}
    record = list_recorder(results, "decodes", args.out)
    shapes = decoder_shapes(pipe, batch=args.batch)
    run_ways(pipe, shapes, record=record, repeats=args.repeats, backend=args.backend, ways=ways)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
