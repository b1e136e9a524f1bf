"""``python -m bench.first_request_after_training``: where a worker's first request after a training loses time.

Through the real worker, the first ``/headshot`` after a training took 0.4-0.7 s more GPU time than the requests
after it, in every run (BENCHMARKS.md, 2026-12-04 fifth and sixth sessions), and the allocator reserved nothing new
in it. This sets a worker up as a worker does (``prepare_model``: its slots, compile, warm-up, training graphs),
then, for ``--rounds`` rounds: trains a LoRA on ``--selfies`` through the worker's training path (its recipe, its
training slot), then renders three requests as ``jobs.worker.render_job`` does on the GPU (swap the LoRA in and
merge it, render 4 at batch 4 with CFG, decode, clear): with the LoRA trained before (the first request after the
training), then with the new LoRA twice (its first and second), each split by stage with the device synchronised
around each, with the garbage collections inside them. Before the first training, two requests give the worker's
time with no training before it. A worker keeps its start's objects out of garbage collections
(``jobs.worker.state.freeze_start_up_objects``); this does too, and says what a full collection cost before and
after, unless ``--no-freeze``. With ``--profile``, the last round profiles its three requests instead (GPU kernel
time by kind, the share of wall time the GPU was idle, the costliest kernels), so they can be compared kernel by
kernel.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.benchmark_request import STYLE, worker_settings
from bench.measure import add_cudnn_autotune_switch, key_recorder, measured, use_cudnn_autotune
from bench.profiling import gpu_profile
from jobs.worker.laps import CollectionClock

__all__ = ["full_collection", "gc_pauses", "main", "timed_request", "train_as_worker"]

BATCH = 4
USER = "bench:first-request"


@contextmanager
def gc_pauses() -> Iterator[dict[str, float]]:
    """Python's garbage collections inside, as the worker's log lines count them (``jobs.worker.laps``):
    {"gc_s": seconds collecting, "gc_oldest": collections of the oldest generation, which walk every tracked
    object}."""
    clock = CollectionClock().start()
    pauses: dict[str, float] = {}
    try:
        yield pauses
    finally:
        clock.stop()
        pauses.update(gc_s=round(clock.seconds, 3), gc_oldest=clock.oldest)


def full_collection() -> float:
    """Seconds one collection of every generation takes now."""
    started = time.perf_counter()
    gc.collect()
    return time.perf_counter() - started


def train_as_worker(model: Any, settings: Any, photos: list[bytes], folder: Path, seed: int) -> dict[str, Any]:
    """One LoRA trained as ``jobs.worker.train_job`` trains it (its recipe, decode and slot): its path, its seconds
    and the garbage collections inside."""
    from jobs.contract.keys import lora_key, selfie_key
    from jobs.contract.payloads import TrainRequest
    from jobs.worker.train_job import training_config
    from pipeline.diffusion.training.dataset import decode_for_training
    from pipeline.diffusion.training.loop import train_lora

    request = TrainRequest(
        user_key=USER,
        session_id=seed,
        selfie_keys=[selfie_key(USER, seed, number) for number in range(len(photos))],
        lora_key=lora_key(USER, seed),
        seed=seed,
    )
    config = training_config(request, settings, model.train_plan)
    images = decode_for_training(model.training_pipe, photos, config.resolution)
    with gc_pauses() as pauses, measured(str(model.pipe.unet.device)) as trained:
        result = train_lora(
            model.training_pipe,
            images,
            config,
            folder,
            class_images=model.class_images_for(config.class_prompt),
            slot=model.training_slot,
        )
    return {"lora_path": result.lora_path, "training_s": round(trained.seconds, 2), "training_gc": pauses}


def timed_request(model: Any, lora: Path, steps: int) -> dict[str, float]:
    """A request's GPU work as ``render_job`` does it, timed by stage with the device synchronised around each:
    the swap (load and merge), the render (denoising, decode, 8-bit pixels), the clear."""
    from pipeline.diffusion.generation import generate_headshots
    from pipeline.styles import STYLES

    pipe, slot = model.pipe, model.lora_slot
    device = str(pipe.unet.device)
    split: dict[str, float] = {}
    with gc_pauses() as pauses, measured(device) as whole:
        with measured(device) as stage:
            slot.swap_in(lora)
        split["swap_s"] = stage.seconds
        with measured(device) as stage:
            # The slot already holds the LoRA: the render goes through it as generate_headshots' own swap would.
            generate_headshots(pipe, STYLES[STYLE], count=BATCH, seed=7, batch_size=BATCH, steps=steps)
        split["render_s"] = stage.seconds
        with measured(device) as stage:
            slot.clear()
        split["clear_s"] = stage.seconds
    split["request_s"] = whole.seconds
    return {key: round(value, 3) for key, value in split.items()} | pauses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_request_after_training", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--selfies", type=Path, required=True, help="a folder of selfies (JPEG or PNG) to train on")
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per image")
    parser.add_argument("--rounds", type=int, default=2, help="trainings, each followed by three requests")
    parser.add_argument("--profile", action="store_true", help="profile the last round's three requests")
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave the start's objects in garbage collections (before 2026-12-04)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)
    use_cudnn_autotune(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from jobs.worker.model_setup import prepare_model
    from jobs.worker.state import freeze_start_up_objects
    from pipeline.diffusion.loading import pick_device

    photos = [path.read_bytes() for path in sorted(args.selfies.iterdir()) if path.suffix.lower() in (".jpg", ".png")]
    if not photos:
        parser.error(f"no .jpg or .png selfies in {args.selfies}")
    device = pick_device()
    scratch = Path(tempfile.mkdtemp(prefix="bench-first-request-"))
    settings = worker_settings("random-sdxl" if args.model == "sdxl" else "tiny", scratch)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "request": {"style": STYLE, "images": BATCH, "steps": args.steps},
        "selfies": len(photos),
        "rounds": [],
    }

    record = key_recorder(results, args.out)

    with measured(device) as ready:
        model = prepare_model(settings)
    record("worker_ready_s", round(ready.seconds, 1))
    record("python_objects_tracked_when_ready", len(gc.get_objects()))
    # What a collection of the oldest generation costs the worker (the freeze's own, unless --no-freeze), then what
    # one costs after the freeze.
    if args.no_freeze:
        collections: dict[str, float] = {"full_collection_s": round(full_collection(), 3), "frozen_objects": 0}
    else:
        frozen, seconds = freeze_start_up_objects()
        collections = {"full_collection_s": round(seconds, 3), "frozen_objects": frozen}
        collections["full_collection_after_freeze_s"] = round(full_collection(), 4)
    record("garbage_collection", collections)
    rounds: list[dict[str, Any]] = []
    previous = train_as_worker(model, settings, photos, scratch / "lora-0", seed=0)["lora_path"]
    # No training just before these: the worker's steady requests (the LoRA trained above, a request earlier).
    timed_request(model, previous, args.steps)
    record("before_training", [timed_request(model, previous, args.steps) for _ in range(2)])
    for number in range(1, args.rounds + 1):
        trained = train_as_worker(model, settings, photos, scratch / f"lora-{number}", seed=number)
        # Three requests: the LoRA before (the first after a training, not a new LoRA's first), then the new one
        # twice (a new LoRA's first, then its second): which of the two firsts is the slow one.
        requests = {
            "first_previous_lora": functools.partial(timed_request, model, previous, args.steps),
            "first_new_lora": functools.partial(timed_request, model, trained["lora_path"], args.steps),
            "second_new_lora": functools.partial(timed_request, model, trained["lora_path"], args.steps),
        }
        figures: dict[str, Any] = {"training_s": trained["training_s"], "training_gc": trained["training_gc"]}
        for name, request in requests.items():
            profiled = args.profile and number == args.rounds
            figures[name] = gpu_profile(device, request, label=name) if profiled else request()
        rounds.append(figures)
        record("rounds", rounds)
        previous = trained["lora_path"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
