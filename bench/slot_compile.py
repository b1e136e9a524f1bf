"""``python -m bench.slot_compile``: how long a worker's training slot takes to compile its first training job.

A pipeline set up as a worker sets one up for training (the rendering ``LoraSlot``, then a ``TrainingSlot`` compiled
by ``--scope``), then one ``train_lora`` job of ``--steps`` steps on the astronaut's crops for each of ``--aspects``
(a worker's training buckets, in the order its warm-up compiles them), each timed with its compile, on an empty
kernel folder unless ``TORCHINDUCTOR_CACHE_DIR`` names one. Prints (and with ``--out`` writes) each job's seconds,
the graphs dynamo made for it and its losses: run it in two trees to compare what they compile.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slot_compile", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "random-sdxl"), default="tiny")
    parser.add_argument("--scope", choices=("blocks", "regions"), default="blocks")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--aspects", default="1:1", help="comma-separated W:H buckets, one job each, in this order")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="slot-compile-"))

    from PIL import Image
    from skimage import data

    from bench.measure import graph_count
    from pipeline.diffusion.loading import load_base_pipeline, pick_device
    from pipeline.diffusion.lora_slot import LoraSlot
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.diffusion.training.loop import train_lora
    from pipeline.diffusion.training.slot import TrainingSlot

    device = pick_device()
    pipe = load_base_pipeline(args.model, device=device, cache_dir=Path(tempfile.mkdtemp(prefix="models-")))
    LoraSlot(pipe, max_rank=16)
    slot = TrainingSlot(pipe, rank=16, compile_backend=args.backend, compile_scope=args.scope)
    astronaut = Image.fromarray(data.astronaut())
    jobs = []
    for aspect in args.aspects.split(","):
        width, height = (int(side) for side in aspect.split(":"))
        longest = max(width, height)
        # Two crops of the astronaut's face at this aspect, 400 and 320 pixels on their longer side.
        selfies = [
            astronaut.crop((left, top, left + side * width // longest, top + side * height // longest))
            for left, top, side in ((60, 0, 400), (100, 20, 320))
        ]
        started, graphs_before = time.perf_counter(), graph_count()
        with tempfile.TemporaryDirectory(prefix="lora-") as folder:
            config = TrainingConfig(rank=16, steps=args.steps, seed=1)
            result = train_lora(pipe, selfies, config, Path(folder), slot=slot)
        jobs.append(
            {
                "aspect": aspect,
                "job_s": round(time.perf_counter() - started, 1),
                "graphs": graph_count() - graphs_before,
                "losses": [round(loss, 6) for loss in result.losses],
            }
        )
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "device": device,
        "scope": args.scope,
        "backend": args.backend,
        "jobs": jobs,
        "jobs_s": round(sum(job["job_s"] for job in jobs), 1),
        "graphs": sum(job["graphs"] for job in jobs),
    }
    print(json.dumps(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
