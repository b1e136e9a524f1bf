"""``python -m bench.benchmark_encoding``: a training job's first phase, its stored selfies decoded, cropped,
mirrored and encoded by the VAE (``decode_for_training``, ``encode_training_set``), on a model laid out as a GPU
worker lays it out (``gpu_layout``; TF32; cuDNN's autotuner as ``--cudnn-autotune`` says).

The host's part first: the photos decoded whole (the way before) and as ``decode_for_training`` decodes them, and
cropped one at a time. Then each way of ``WAYS`` times its first call (what a worker's first job of that shape pays
on top: cuDNN's choices, kernels loaded) and the median of ``--repeats`` calls. The ways run in ``WAYS``' order in
one process, so a way after the first finds the kernels the ones before it loaded, as a worker's first job finds
those its warm-up loaded. Last, one warm call of the worker's way is profiled (``profiling.gpu_profile``): its GPU
time by kind and kernel. Give phone-sized photos (``python -m bench.phone_selfies``) for a user's real cost.

The ways (2026-12-05): the worker's, whose VAE encoder runs its group norms through ``headshot::group_norm``
(``model_setup.use_group_norm_operators``), against the same with torch's norms, the worker's way until then, and a
channels-last encoder whose norms run the operator's NHWC kernels (the fourth session's channels-last encoder lost
half its time to torch's norms copying layouts). The fourth session's other ways (a compiled encoder) are in
BENCHMARKS.md and git history."""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path
from typing import Any, NamedTuple

from bench.measure import (
    add_cudnn_autotune_switch,
    benchmark_pipeline,
    describe_run,
    list_recorder,
    measured,
    sample_images,
    use_cudnn_autotune,
)
from bench.profiling import gpu_profile

__all__ = ["WAYS", "Way", "lay_out_encoder", "main"]


class Way(NamedTuple):
    chunk: int  # crops the VAE encodes at once
    drafted: bool  # the photos decoded as ``decode_for_training`` decodes them, else whole
    operator_norms: bool  # the encoder's group norms through ``headshot::group_norm``, else torch's
    channels_last: bool = False  # the encoder laid out channels-last (its norms then the operator's NHWC kernels)


# A worker's warm-up first (one picture a bucket: a chunk of two), then the way before, the worker's and another.
WAYS: dict[str, Way] = {
    "warm-up: chunks of 2, norms through the operator": Way(2, True, True),
    "before: chunks of 4, torch's norms": Way(4, True, False),
    "worker: chunks of 4, norms through the operator": Way(4, True, True),
    "chunks of 8, norms through the operator": Way(8, True, True),
    "chunks of 4, norms through the operator, whole decodes": Way(4, False, True),
    "chunks of 4, channels-last, norms through the operator": Way(4, True, True, channels_last=True),
}


def lay_out_encoder(vae: Any, *, channels_last: bool) -> None:
    """``vae``'s encoder (and the convolution after it) channels-last, else NCHW as a worker lays it out."""
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    for part in (vae.encoder, getattr(vae, "quant_conv", None)):
        if part is not None:
            part.to(memory_format=layout)


def load_photos(folder: Path | None, count: int) -> list[bytes]:
    """``count`` stored photos from ``folder`` (repeated if it has fewer), else sample pictures as JPEGs."""
    from pipeline.selfies.decoding import JPEG_QUALITY

    if folder is None:
        photos = []
        for image in sample_images(count):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
            photos.append(buffer.getvalue())
        return photos
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"--selfies {folder} holds no .jpg or .png photos; name a folder of selfies.")
    return [files[index % len(files)].read_bytes() for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_encoding", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--selfies", type=Path, help="a folder of stored photos (default: sample pictures)")
    parser.add_argument("--count", type=int, default=10, help="selfies a job trains on (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)

    from PIL import Image

    from pipeline.diffusion.acceleration import gpu_layout, use_fast_maths
    from pipeline.diffusion.group_norm import use_group_norm_operator
    from pipeline.diffusion.loading import pick_device
    from pipeline.diffusion.training import dataset
    from pipeline.diffusion.training.dataset import bucket_size, crop_to, decode_for_training, encode_training_set

    use_cudnn_autotune(args)
    device = pick_device()
    pipe = benchmark_pipeline(args.model, device)
    use_fast_maths(pipe)
    gpu_layout(pipe)  # a GPU worker's layout (``use_channels_last``), on any device
    photos = load_photos(args.selfies, args.count)
    results: dict[str, Any] = {
        **describe_run(args.model),
        "selfies": args.count,
        "photo_size": list(Image.open(io.BytesIO(photos[0])).size),
        "vae_dtype": str(pipe.vae.dtype),
        "cudnn_autotune": args.cudnn_autotune,
    }
    record = list_recorder(results, "encodings", args.out)

    # The host's part: the photos decoded (before: whole, one after another, on the worker's event loop) and cropped.
    with measured(device) as timed:
        whole = [Image.open(io.BytesIO(photo)).convert("RGB") for photo in photos]
    record({"way": "decode whole, one at a time (before)", "seconds": round(timed.seconds, 3)})
    with measured(device) as timed:
        drafted = decode_for_training(pipe, photos)
    record({"way": "decode_for_training (worker)", "seconds": round(timed.seconds, 3), "size": list(drafted[0].size)})
    for name, images in (("whole", whole), ("drafted", drafted)):
        with measured(device) as timed:
            for image in images:
                crop_to(image, bucket_size(pipe, image.width, image.height))
        record({"way": f"crops of {name} decodes, one at a time", "seconds": round(timed.seconds, 3)})

    worker_chunk = dataset.ENCODE_CHUNK
    for name, way in WAYS.items():
        lay_out_encoder(pipe.vae, channels_last=way.channels_last)
        use_group_norm_operator(pipe.vae.encoder, enabled=way.operator_norms, no_grad=True)
        images = drafted if way.drafted else whole
        dataset.ENCODE_CHUNK = way.chunk
        with measured(device) as first:
            encode_training_set(pipe, images)
        seconds = []
        for _ in range(args.repeats):
            with measured(device) as timed:
                encode_training_set(pipe, images)
            seconds.append(timed.seconds)
        record(
            {
                "way": name,
                "first_call_s": round(first.seconds, 3),
                "warm_s": round(statistics.median(seconds), 3),
                "peak_gib": round(timed.peak_gib, 2),
            }
        )
    dataset.ENCODE_CHUNK = worker_chunk
    lay_out_encoder(pipe.vae, channels_last=False)
    use_group_norm_operator(pipe.vae.encoder, no_grad=True)
    if device.startswith("cuda"):
        record(
            {
                "way": "worker, profiled",
                **gpu_profile(device, lambda: encode_training_set(pipe, drafted), label="worker"),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
