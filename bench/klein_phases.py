"""The klein benchmark's phases: both training loops per size, each side's renders, the previews.

Each phase writes its figures to the ``Journal`` one by one; ``bench.benchmark_klein`` runs them in order.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.journal import Journal
from bench.klein_project import (
    accepted,
    as_base_model,
    first_then_timed,
    preview_figures,
    project_training,
    user_lora,
)
from bench.klein_reference import plain_render, reference_training_rate
from bench.measure import measured, sample_images

__all__ = [
    "Bench",
    "preview_plain",
    "preview_project",
    "render_compiled",
    "render_plain",
    "render_project",
    "train",
]

BASE_FIRST_CALL_STEPS = 2  # a base-model call's graphs do not depend on its step count


@dataclass
class Bench:
    """What every phase needs: the arguments, the journal, the project's pipeline and the request it renders."""

    args: argparse.Namespace
    journal: Journal
    device: str
    backend: str
    project: Any
    style: Any
    subject: Any
    prompt: str
    size: tuple[int, int]
    rank: int
    slot: Any = None  # the worker's LoraSlot, once the project's render phase has set it up


def train(bench: Bench) -> None:
    """Per size, smallest first: the project's loop at the worker's plan, then the reference step."""

    from pipeline.diffusion.families import Family
    from pipeline.diffusion.loading import gpu_memory_gib
    from pipeline.diffusion.training.memory_plan import MemoryPlan, memory_plan

    args, journal = bench.args, bench.journal
    plan = memory_plan(gpu_memory_gib(bench.device), Family.FLUX2)
    if args.train_batch:
        plan = MemoryPlan(batch_size=args.train_batch, gradient_checkpointing=plan.gradient_checkpointing)
    images = sample_images(8)
    for px in args.sizes:
        project = partial(
            project_training,
            bench.project,
            images,
            resolution=px,
            optimizer_steps=args.train_steps,
            rank=bench.rank,
            plan=plan,
        )
        reference = partial(
            reference_training_rate,
            bench.project,
            images,
            resolution=px,
            steps=args.reference_steps,
            warmup=args.reference_warmup,
        )
        journal.phase(f"train_{px}_project", partial(journal.attempt, ("train", px, "project"), project))
        journal.phase(f"train_{px}_reference", partial(journal.attempt, ("train", px, "reference"), reference))


def render_side(bench: Bench, side: str, pipe: Any, render: Callable[[int, int], Any]) -> None:
    """One side's figures, ``render(batch, steps)`` at each batch: the distilled model (a first call, then timed),
    then the base model (a 2-step first call, where a CFG call that compiles would pay for it, then timed)."""
    from pipeline.diffusion.flux2_rendering import DISTILLED_STEPS

    args, device = bench.args, str(pipe.transformer.device)
    for batch in args.batches:
        distilled = partial(render, batch, DISTILLED_STEPS)
        measure = partial(first_then_timed, device, distilled, repeats=args.repeats, images=batch)
        bench.journal.attempt(("render", "distilled", f"b{batch}", side), measure)
    with as_base_model(pipe):
        for batch in args.batches:
            base, first = partial(render, batch, args.base_steps), partial(render, batch, BASE_FIRST_CALL_STEPS)
            measure = partial(first_then_timed, device, base, repeats=args.base_repeats, images=batch, first=first)
            bench.journal.attempt(("render", "base", f"b{batch}", side), measure)


def plain_renderer(bench: Bench, plain: Any) -> Callable[..., None]:
    """``render(batch, steps, references=None)`` through the plain pipeline with the project's prompt and size, CFG
    as the pipeline's config says (the distilled model has none)."""
    from pipeline.diffusion.flux2_rendering import BASE_GUIDANCE

    def render(batch: int, steps: int, references: list[Any] | None = None) -> None:
        guidance = 1.0 if plain.config.is_distilled else BASE_GUIDANCE
        plain_render(
            plain, bench.prompt, batch=batch, steps=steps, guidance_scale=guidance, size=bench.size, images=references
        )

    return render


def preview_plain(bench: Bench, plain: Any, selfies: list[Any], crops: list[Any]) -> None:
    """A preview from two references through the plain pipeline, eager: the selfies as they are (the pipeline
    shrinks them to 1 MP at most), then the square crops the project renders from."""
    from pipeline.diffusion.flux2_rendering import DISTILLED_STEPS

    render = plain_renderer(bench, plain)
    count = bench.args.preview_count
    for label, refs in (("selfies", selfies), ("crops", crops)):
        call = partial(render, count, DISTILLED_STEPS, refs)
        measure = partial(preview_figures, bench.device, call, refs, repeats=bench.args.repeats, images=count)
        bench.journal.attempt(("preview", "plain_eager", label), measure)


def render_project(bench: Bench) -> None:
    """The project's pipeline set up as a klein worker (the LoRA slot, then ``compile_for_serving``), then requests
    with a user's LoRA through the slot."""
    from pipeline.diffusion.generation import generate_headshots
    from pipeline.diffusion.lora_slot import LoraSlot
    from pipeline.diffusion.serving import compile_for_serving

    args, project = bench.args, bench.project
    slot = bench.slot = LoraSlot(project, max_rank=bench.rank)
    lora = user_lora(slot, Path(tempfile.mkdtemp(prefix="bench-klein-")), rank=bench.rank)
    # Where the tree's worker warms previews at start, so does this one, at the preview's batch.
    previews = accepted(
        compile_for_serving, preview_batch_sizes=[args.preview_count] if "preview" in args.phases else []
    )
    with measured(bench.device) as setup:
        if not args.no_project_compile:
            compile_for_serving(
                project, slot, styles=[bench.style], batch_sizes=args.batches, compile_backend=bench.backend, **previews
            )
    bench.journal.record(
        ("render", "project_setup"),
        {
            "compiled": not args.no_project_compile,
            "worker_setup_s": setup.seconds,
            "warmed_batches": args.batches,
            "warmed_preview_batches": previews.get("preview_batch_sizes", "none: this tree's worker warms none"),
            "lora_rank": bench.rank,
        },
    )

    def render(batch: int, steps: int) -> None:
        generate_headshots(
            project,
            bench.style,
            count=batch,
            seed=1,
            lora_path=lora,
            batch_size=batch,
            steps=steps,
            lora_slot=slot,
            subject=bench.subject,
        )

    render_side(bench, "project", project, render)


def preview_project(bench: Bench, selfies: list[Any]) -> None:
    """``render_from_references`` on the project's pipeline as the render phase left it, where the module exists."""
    try:
        references = importlib.import_module("pipeline.diffusion.references")
    except ImportError as error:
        bench.journal.record(("preview", "project"), {"not_measured": f"{error}; only the plain image=[...] call was"})
        return
    crops, count = references.reference_crops(bench.project, selfies), bench.args.preview_count
    render = references.render_from_references
    through_slot = accepted(render, lora_slot=bench.slot) if bench.slot is not None else {}  # as the worker calls it

    def call() -> None:
        render(bench.project, crops, bench.style, count=count, seed=1, subject=bench.subject, **through_slot)

    measure = partial(preview_figures, bench.device, call, crops, repeats=bench.args.repeats, images=count)
    bench.journal.attempt(("preview", "project"), measure)


def render_plain(bench: Bench, plain: Any) -> None:
    """The plain pipeline as a diffusers user calls it, eager."""
    render_side(bench, "plain_eager", plain, plain_renderer(bench, plain))


def render_compiled(bench: Bench, plain: Any) -> None:
    """The plain pipeline with ``torch.compile(pipe.transformer)``, as diffusers' docs show it."""
    import torch

    plain.transformer = torch.compile(plain.transformer, backend=bench.backend)
    render_side(bench, "plain_compiled", plain, plain_renderer(bench, plain))
