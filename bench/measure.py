"""What every benchmark shares: the model it measures, sample pictures, a synchronised timer with peak memory, a
median of CUDA-event timings, a count of the graphs torch.compile has built (a recompile shows as a new one), and
freeing the GPU between figures."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "Measure",
    "add_cudnn_autotune_switch",
    "add_tiles_option",
    "benchmark_pipeline",
    "describe_run",
    "free_memory",
    "graph_count",
    "list_recorder",
    "measured",
    "median_gpu_seconds",
    "parse_tiles",
    "per_unet_call",
    "report",
    "sample_images",
    "synchronize",
    "use_cudnn_autotune",
]


@dataclass
class Measure:
    seconds: float = 0.0
    peak_gib: float = 0.0


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work on a CUDA ``device``; nothing on a CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def measured(device: str) -> Iterator[Measure]:
    """Wall time with the device synchronised at both ends, and the peak memory allocated inside."""
    import torch

    result = Measure()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    yield result
    if cuda:
        torch.cuda.synchronize()
        result.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    result.seconds = time.perf_counter() - started


def median_gpu_seconds(call: Callable[[], Any], repeats: int, *, replayed: bool = False) -> float:
    """Seconds ``call`` keeps the current CUDA stream busy, by CUDA events: the median of ``repeats`` after one
    warm-up call. ``replayed``: ``call`` captured once as a CUDA graph and each repeat a replay of it, so a call of
    several kernels is timed without the host's gaps between their launches (as a worker's replayed UNet call runs
    them; ``bench.benchmark_geglu_float8``'s standalone worker way was 38% slower launched from Python than inside
    the render call, BENCHMARKS.md 2026-12-06 twenty-second session)."""
    import statistics

    import torch

    call()
    torch.cuda.synchronize()
    if replayed:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # a warm-up off the default stream, as capturing wants
            call()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            call()
        call = graph.replay
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    seconds = []
    for _ in range(repeats):
        start.record()
        call()
        end.record()
        end.synchronize()
        seconds.append(start.elapsed_time(end) / 1e3)
    return statistics.median(seconds)


def free_memory() -> None:
    """What a finished or failed measurement left behind, given back to the GPU's free memory."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sample_images(count: int) -> list[Image.Image]:
    """Crops of scikit-image's astronaut photo when it is installed (content does not change the cost)."""
    try:
        from skimage import data

        photo = Image.fromarray(data.astronaut())
    except ImportError:
        photo = Image.new("RGB", (512, 512), "grey")
    return [photo.crop((10 * i, 5 * i, 10 * i + 400, 5 * i + 400)) for i in range(count)]


def benchmark_pipeline(model: str, device: str) -> Any:
    """What the benchmarks measure: ``"sdxl"``, SDXL's architecture with random weights, or ``"tiny"``."""
    if model == "tiny":
        from pipeline.diffusion.loading import load_base_pipeline

        return load_base_pipeline("tiny", device=device, cache_dir=Path(tempfile.gettempdir()) / "headshot-models")
    from pipeline.diffusion.sdxl_config import build_random_sdxl

    return build_random_sdxl(device=device)


def describe_run(model: str) -> dict[str, Any]:
    """What every results file opens with: the date, the device (the GPU's name, or "cpu"), torch and the model."""
    import torch

    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "model": model,
    }


def graph_count() -> int:
    """Graphs torch.compile has built in this process so far."""
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def list_recorder(results: dict[str, Any], key: str, out: Path | None) -> Callable[[dict[str, Any]], None]:
    """A ``record(figures)`` that appends ``figures`` to ``results[key]``, prints them as one line and rewrites
    ``out`` (when given) with everything so far, so a run cut short still leaves its figures."""
    import json

    results.setdefault(key, [])

    def record(figures: dict[str, Any]) -> None:
        results[key].append(figures)
        print(key, json.dumps(figures), flush=True)
        if out:
            out.write_text(json.dumps(results, indent=2) + "\n")

    return record


def key_recorder(results: dict[str, Any], out: Path | None) -> Callable[[str, Any], None]:
    """A ``record(key, figures)`` that sets ``results[key]``, prints it as one line and rewrites ``out`` (when given)
    with everything so far, so a run cut short still leaves its figures."""
    import json

    def record(key: str, figures: Any) -> None:
        results[key] = figures
        print(key, json.dumps(figures, default=str), flush=True)
        if out:
            out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    return record


def report(results: dict[str, Any], out: Path | None) -> None:
    """Print ``results`` as one JSON line, and write them (indented) to ``out`` when given."""
    import json

    print(json.dumps(results), flush=True)
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


def add_cudnn_autotune_switch(parser: argparse.ArgumentParser) -> None:
    """``--cudnn-autotune on|off``: the worker's cuDNN autotuner (``acceleration.CUDNN_AUTOTUNE``, off), for a start,
    a request or a UNet call timed with it; ``use_cudnn_autotune(args)`` applies it before the worker is set up."""
    parser.add_argument(
        "--cudnn-autotune", choices=("on", "off"), default="off", help="cuDNN's autotuner (the worker's default: off)"
    )


def add_tiles_option(parser: argparse.ArgumentParser, kernel: str, fields: str, example: str) -> None:
    """``--tiles``: comma-separated tile configurations of a Triton ``kernel`` to time besides its own, each its
    ``fields`` joined by "x" (e.g. "ROWSxCOLUMNSxWARPSxSTAGES"); ``parse_tiles`` reads them."""
    parser.add_argument(
        "--tiles",
        default="",
        help=f"comma-separated tile configurations to time the {kernel} with besides its own, each {fields} "
        f"(e.g. {example})",
    )


def parse_tiles(parser: argparse.ArgumentParser, args: argparse.Namespace, fields: str) -> tuple[tuple[int, ...], ...]:
    """``--tiles`` as tuples of whole numbers, one for each of ``fields`` (``add_tiles_option``'s); a bad one ends
    the program with a message naming it."""
    count = len(fields.split("x"))
    try:
        tiles = tuple(tuple(int(part) for part in text.split("x")) for text in args.tiles.split(",") if text)
    except ValueError:
        tiles = None
    if tiles is None or any(len(tile) != count for tile in tiles):
        parser.error(f"--tiles takes {fields}, {count} whole numbers each, not {args.tiles!r}")
    return tiles


def per_unet_call(results: dict[str, Any], rows: str, count: str, label: str, out: Path | None) -> None:
    """Close a kernel benchmark: each way's ``*_ms`` figure in ``results[rows]`` (one row a shape) times the row's
    ``count`` (how many of that shape a UNet call has), summed into ``results["ms_per_unet_call"]``, printed under
    ``label`` and, with ``out``, the results written there as JSON. A way that failed at a shape (its figure a
    message, not a number) sums to NaN."""
    import json

    totals: dict[str, float] = {}
    for row in results[rows]:
        for key, value in row.items():
            if key.endswith("_ms"):
                totals[key] = totals.get(key, 0.0) + (value * row[count] if isinstance(value, float) else float("nan"))
    results["ms_per_unet_call"] = {key: round(value, 3) for key, value in totals.items()}
    print(f"{label} a UNet call (ms)", json.dumps(results["ms_per_unet_call"]), flush=True)
    if out:
        out.write_text(json.dumps(results, indent=2) + "\n")


def use_cudnn_autotune(args: argparse.Namespace) -> None:
    """Apply ``--cudnn-autotune`` to this process (before ``use_fast_maths``: a worker's ``prepare_model``)."""
    from pipeline.diffusion import acceleration

    acceleration.CUDNN_AUTOTUNE = args.cudnn_autotune == "on"
