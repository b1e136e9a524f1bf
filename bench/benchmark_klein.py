"""``python -m bench.benchmark_klein``: FLUX.2 [klein] 4B, the project against diffusers' recipes (issue 17).

On klein 4B's real architecture with random weights (``bench.klein_model``; ``--tiny``: the tiny klein model on a
CPU, a smoke run), side by side:

- training image-steps/s at each ``--sizes`` resolution: ``pipeline.diffusion.training``'s ``train_lora`` as the
  worker runs it (rank 16 on the family's targets, cached latents and prompt, the GPU's batch plan, fp32 LoRA under
  autocast, fused AdamW) vs the step of diffusers' ``train_dreambooth_lora_flux2_klein.py`` (``bench.klein_reference``);
- rendering s/image at batch 1 and 4, distilled (4 steps, no CFG) and base (50 steps, CFG 4): ``generate_headshots``
  with a user's LoRA through the worker's LoRA slot, set up and compiled as a klein worker is
  (``compile_for_serving``), vs a plain ``Flux2KleinPipeline`` call, eager and with ``torch.compile(pipe.transformer)``;
- preview latency from 2 selfies as references: the plain ``image=[...]`` call, and the project's
  ``pipeline.diffusion.references.render_from_references`` where that module exists;
- GPU-seconds per customer (the worker's training + 40 headshots) from the measured rates, beside SDXL's.

Each phase and each figure is wrapped: a failure (a CUDA OOM, say) is recorded in the JSON and the run goes on. The
JSON is rewritten after every figure, so a run cut short still reports; phases that would start after ``--budget-s``
are skipped (the device runs a command for 10 minutes at most).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.journal import Journal
from bench.klein_model import describe_pipeline, klein_pipelines
from bench.klein_phases import (
    Bench,
    preview_plain,
    preview_project,
    render_compiled,
    render_plain,
    render_project,
    train,
)
from bench.klein_project import maths_switches_restored, selfies_and_crops
from bench.klein_report import customer_costs, print_table
from bench.measure import measured

__all__ = ["main"]

# In the order they run: both training loops; the plain pipeline eager; previews (plain, then the project's); the
# project's requests; the plain pipeline compiled.
PHASES = ("train", "plain", "preview", "project", "compiled")
# Unset arguments: (klein 4B on a GPU, the tiny model on a CPU, where only the code path is checked).
MODE_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "sizes": ([512, 768, 1024], [32]),
    "train_steps": (8, 3),
    "reference_steps": (6, 1),
    "reference_warmup": (2, 1),
    "repeats": (3, 1),
}


def _commit() -> str | None:
    try:
        folder = Path(__file__).resolve().parent.parent
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None  # no git, or a copy of the tree without its history
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the mode's defaults filled in and the device and compile backend resolved."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark_klein",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each figure)")
    parser.add_argument("--tiny", action="store_true", help="the tiny klein model on a CPU: checks the code path")
    parser.add_argument("--device", help="default: cpu with --tiny, else cuda when present")
    parser.add_argument(
        "--phases", type=lambda text: text.split(","), default=list(PHASES), help=f"any of {','.join(PHASES)}"
    )
    parser.add_argument("--sizes", type=numbers, help="training resolutions")
    parser.add_argument("--train-steps", type=int, help="project optimizer steps per size")
    parser.add_argument("--train-batch", type=int, help="the project's batch (default: the worker's plan)")
    parser.add_argument("--reference-steps", type=int, help="timed reference steps per size")
    parser.add_argument("--reference-warmup", type=int, help="untimed reference steps before")
    parser.add_argument("--batches", type=numbers, default=[1, 4], help="render batch sizes")
    parser.add_argument("--repeats", type=int, help="timed calls per distilled and preview figure")
    parser.add_argument("--base-repeats", type=int, default=1, help="timed calls per base-model figure")
    parser.add_argument("--base-steps", type=int, help="base-model steps (default: the project's 50; tiny 2)")
    parser.add_argument("--preview-count", type=int, default=2, help="images per preview (a klein worker's 2)")
    parser.add_argument("--compile-backend", help="default: inductor on CUDA, eager on a CPU")
    parser.add_argument("--no-project-compile", action="store_true", help="render the project's side eagerly")
    parser.add_argument("--budget-s", type=float, default=480, help="phases that would start later are skipped")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "headshot-models")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.phases) - set(PHASES)):
        parser.error(f"--phases names {', '.join(unknown)}; pick from {', '.join(PHASES)}")

    from pipeline.diffusion.flux2_rendering import BASE_STEPS
    from pipeline.diffusion.loading import pick_device

    args.device = args.device or ("cpu" if args.tiny else pick_device())
    if not args.tiny and not args.device.startswith("cuda"):
        parser.error("klein 4B's 8 B parameters need a CUDA GPU; --tiny checks the code path on a CPU")
    args.compile_backend = args.compile_backend or ("inductor" if args.device.startswith("cuda") else "eager")
    for name, (full_size, tiny) in MODE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full_size)
    args.base_steps = args.base_steps or (2 if args.tiny else BASE_STEPS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)

    import diffusers
    import peft
    import torch
    import transformers

    from jobs.settings import Settings
    from pipeline.diffusion.flux2_rendering import BASE_GUIDANCE, DISTILLED_STEPS
    from pipeline.diffusion.generation import headshot_size
    from pipeline.diffusion.training.config import TrainingConfig
    from pipeline.styles import STYLES
    from pipeline.subject import Subject

    # 1. What the run is.
    device, backend = args.device, args.compile_backend
    journal = Journal(args.out, args.budget_s)
    journal.results.update(
        {
            "date": time.strftime("%Y-%m-%d"),
            "commit": _commit(),
            "device": torch.cuda.get_device_name(device)
            if device.startswith("cuda")
            else platform.processor() or "cpu",
            "versions": {
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
            "model": "tiny klein (CPU smoke run)"
            if args.tiny
            else "FLUX.2 [klein] 4B architecture, random bf16 weights",
            "arguments": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "compile_backend": backend,
        }
    )

    # 2. The models: the project's pipeline and a plain one for the baselines.
    pipes: list[Any] = []

    def build() -> None:
        with measured(device) as built:
            pipes.extend(klein_pipelines(tiny=args.tiny, device=device, cache_dir=args.cache_dir))
        journal.record(("build_s",), built.seconds)
        journal.record(("architecture",), describe_pipeline(pipes[0]))

    journal.phase("build", build)
    if not pipes:
        return 1
    project, plain = pipes
    pipes.clear()
    style, subject = STYLES["linkedin"], Subject()
    bench = Bench(
        args=args,
        journal=journal,
        device=device,
        backend=backend,
        project=project,
        style=style,
        subject=subject,
        prompt=style.render_sentence(subject.phrase()),  # what the project's call prompts with
        size=headshot_size(project, style.aspect),
        rank=Settings.model_fields["lora_rank"].default,  # the worker's LoRA rank and slot size
    )
    journal.record(
        ("render_settings",),
        {
            "size": "{}x{}".format(*bench.size),
            "prompt": bench.prompt,
            "distilled": {"steps": DISTILLED_STEPS, "guidance_scale": 1.0},
            "base": {"steps": args.base_steps, "guidance_scale": BASE_GUIDANCE},
        },
    )

    # 3. Training; 4. rendering and previews; 5. one customer, from the rates; 6. the plain pipeline compiled,
    #    last: it is the figure a short budget can lose.
    selfies, crops = selfies_and_crops(project)
    if "train" in args.phases:
        train(bench)
    if "plain" in args.phases:
        journal.phase("render_plain_eager", lambda: render_plain(bench, plain))
    if "preview" in args.phases:
        journal.phase("preview_plain", lambda: preview_plain(bench, plain, selfies, crops))
    with maths_switches_restored():  # the worker's TF32 and cuDNN autotuning stay with the project's side
        if "project" in args.phases:
            journal.phase("render_project", lambda: render_project(bench))
        if "preview" in args.phases:
            journal.phase("preview_project", lambda: preview_project(bench, selfies))
    image_steps = {
        "worker_train_steps": Settings.model_fields["train_steps"].default,
        "training_config_steps": TrainingConfig().steps,
    }
    if {"train", "plain", "project"} <= set(args.phases):
        customer = partial(customer_costs, journal.results, project.vae.config.sample_size, image_steps)
        journal.phase("customer", partial(journal.attempt, ("gpu_s_per_customer",), customer))
    if "compiled" in args.phases:
        journal.phase("render_plain_compiled", lambda: render_compiled(bench, plain))
    print_table(journal.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
