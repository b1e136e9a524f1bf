"""``python -m bench.benchmark_training``: LoRA training as a worker trains, against diffusers' reference recipe in
the same process, with a profile and the model FLOPs behind each rate.

The worker side is set up by the worker's own code from ``Settings()`` (the environment's ``HEADSHOT_*`` variables
apply): the memory plan's batch size (``jobs.worker.training_setup.training_plan``) and, where the settings compile
training, the worker's ``TrainingSlot`` warmed for every aspect bucket (``prepare_training``, what a worker's start
does). Then, on ten crops of scikit-image's astronaut photo:

- baseline: diffusers' DreamBooth-LoRA loop (``bench.reference.naive_training_rate``: VAE and text encoders every
  step, batch 1, eager, unfused AdamW), timed before anything is compiled;
- the project's ``train_lora`` with a fresh adapter, eager, at the plan's batch (a worker that compiles nothing);
- the worker's path (``train_lora`` through the slot) at the plan's batch and at each ``--batches`` size, two users
  each: the first may compile (a batch size the warm-up did not see), the second is the steady figure;
- with ``HEADSHOT_TRAIN_FLOAT8=true`` the worker trains through FP8 layers, set up and calibrated on renders first as
  a worker's start does;
- ``--profile``: a few optimizer steps of the worker's path under ``torch.profiler``: GPU kernel time by kind and
  the share of the wall with no kernel running.

Rates are image-steps/s between a run's first and last progress report. Model FLOPs of an image-step: one UNet
forward and its backward at the bucket's size, counted by ``torch.utils.flop_counter`` on a weightless copy (the
input needs its gradient, as the LoRA layers' do; the LoRA's own rank-16 products are left out, under 1%). MFU is
against ``--peak-tflops`` (790: an H200's measured bf16 matrix rate, KINDS.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.benchmark_hotpaths import training_variant
from bench.measure import free_memory, graph_count, sample_images
from bench.profiling import gpu_profile

__all__ = ["image_step_tflop", "main"]


def image_step_tflop(pipe: Any, size: int) -> float:
    """TFLOP of one image-step of SDXL training at ``size`` px: the UNet's forward and backward at batch 1."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = pipe.unet.config
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config).to(torch.bfloat16).requires_grad_(False)  # frozen base
        side = size // pipe.vae_scale_factor
        latents = torch.empty(1, config.in_channels, side, side, dtype=torch.bfloat16, requires_grad=True)
        embeds = torch.empty(1, 77, config.cross_attention_dim, dtype=torch.bfloat16)
        pooled = torch.empty(1, pipe.text_encoder_2.config.projection_dim, dtype=torch.bfloat16)
        time_ids = torch.empty(1, 6, dtype=torch.bfloat16)
        timestep = torch.empty(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        out = unet(latents, timestep, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        out.float().mean().backward()
    return counter.get_total_flops() / 1e12


def fp8_rendering_layers(pipe: Any, settings: Any) -> dict[str, int]:
    """With ``HEADSHOT_TRAIN_FLOAT8``, FP8 rendering's layers and input scales, set up as ``prepare_model`` sets them
    up (that training goes through them); the figure for the results, or nothing."""
    if not settings.train_float8:
        return {}
    from jobs.worker.model_setup import use_float8_rendering

    return {"fp8_layers": use_float8_rendering(pipe, settings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.benchmark_training", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random-sdxl", help="HEADSHOT_MODEL to train on (default: random SDXL)")
    parser.add_argument("--image-steps", type=int, default=320, help="image-steps per timed run")
    parser.add_argument("--batches", default="", help="more batch sizes for the worker's path, e.g. 16")
    parser.add_argument("--reference-steps", type=int, default=12, help="timed steps of the reference loop")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS", help="optimizer steps to profile")
    parser.add_argument("--skip-baselines", action="store_true", help="the worker's path only (another tree's run)")
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from bench.benchmark_request import describe_settings, worker_settings
    from bench.reference import naive_training_rate
    from jobs.worker.model_setup import ServingModel, prepare_training
    from jobs.worker.training_setup import training_plan
    from pipeline.diffusion.loading import load_base_pipeline, pick_device
    from pipeline.diffusion.lora_slot import LoraSlot

    device = pick_device()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__,
        "train": [],
    }

    def record(figures: dict[str, Any]) -> None:
        results["train"].append(figures)
        print("train", json.dumps(figures), flush=True)
        save()

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory() as data_dir:
        settings = worker_settings(args.model, Path(data_dir))
        results["worker"] = describe_settings(settings, device)
        results["worker"]["headshot_env"] = sorted(key for key in os.environ if key.startswith("HEADSHOT_"))
        pipe = load_base_pipeline(
            settings.model, device=device, dtype=settings.dtype, cache_dir=settings.resolved_model_cache_dir
        )
        images = sample_images(10)
        model = ServingModel(pipe, training_plan(pipe, settings), None)
        plan = model.train_plan
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        tflop = image_step_tflop(pipe, size)
        results.update(plan_batch=plan.batch_size, size=size, tflop_per_image_step=float(f"{tflop:.4g}"))

        def with_mfu(figures: dict[str, Any]) -> dict[str, Any]:
            rate = figures.get("image_steps_per_s") or 0.0
            figures["tflops"] = float(f"{rate * tflop:.4g}")
            figures["mfu"] = float(f"{rate * tflop / args.peak_tflops:.3g}")
            return figures

        # 1. Baselines, before anything is compiled or laid out for a worker.
        if not args.skip_baselines:
            rank = settings.lora_rank
            reference = naive_training_rate(pipe, images, steps=args.reference_steps, warmup=2, rank=rank)
            record(with_mfu({"variant": "diffusers' reference loop, batch 1, eager", "batch": 1, **reference}))
            free_memory()
        model.lora_slot = LoraSlot(pipe, max_rank=settings.lora_rank)  # a worker's rendering slot, as it starts
        if not args.skip_baselines:
            label = "project, fresh adapter, eager"
            try:
                eager = training_variant(
                    pipe, images, batch=plan.batch_size, progress_every=10, image_steps=args.image_steps, label="eager"
                )
                record(with_mfu({**eager, "variant": label}))
            except torch.OutOfMemoryError as error:  # eager keeps more activations than the compiled step
                record({"variant": label, "batch": plan.batch_size, "error": str(error).split(".")[0]})
            free_memory()

        # 2. The worker's start: its training slot, warmed for every bucket when it compiles training. With
        #    HEADSHOT_TRAIN_FLOAT8 it trains through FP8 rendering's layers, set up first as prepare_model does.
        results.update(fp8_rendering_layers(pipe, settings))
        started = time.perf_counter()
        prepare_training(model, settings, settings.compile_profile(device))
        results["worker_training_ready_s"] = round(time.perf_counter() - started, 1)
        save()
        slot = model.training_slot

        def two_users(batch: int) -> None:
            for user in ("first user", "next user"):
                graphs = graph_count()
                label = f"worker, batch {batch}, {user}"
                try:
                    steps = args.image_steps
                    figures = training_variant(
                        pipe, images, batch=batch, progress_every=10, image_steps=steps, slot=slot, label=label
                    )
                except torch.OutOfMemoryError as error:
                    record({"variant": label, "batch": batch, "error": str(error).split(".")[0]})
                    free_memory()
                    return
                record(with_mfu({**figures, "graphs_compiled": graph_count() - graphs}))
                free_memory()

        two_users(plan.batch_size)

        # 3. Where the worker's step spends its time.
        if args.profile:
            from pipeline.diffusion.training.config import TrainingConfig
            from pipeline.diffusion.training.loop import train_lora

            batch = plan.batch_size
            config = TrainingConfig(rank=settings.lora_rank, steps=batch * args.profile, batch_size=batch)
            with tempfile.TemporaryDirectory() as folder:
                profile = gpu_profile(
                    device,
                    lambda: train_lora(pipe, images, config, Path(folder), slot=slot),
                    label=f"worker training, {args.profile} optimizer steps at batch {batch} (encoding included)",
                )
            results["profile"] = profile
            save()
        # 4. Batch sizes the plan does not pick (last: one may not fit).
        for batch in (int(b) for b in args.batches.split(",") if b):
            two_users(batch)
    print(json.dumps(results, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
