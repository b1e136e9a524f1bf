"""One training LoRA that stays on a worker's UNet, so a compiled training step is compiled once, not once per user.

``train_lora`` without a slot attaches a fresh adapter per job: new layers, so a compiled forward would recompile for
every user (minutes per job for SDXL, BENCHMARKS.md second session), which is why the worker trained eagerly. A
``TrainingSlot`` attaches one float32 LoRA of the worker's rank once, inactive and zero; each job re-initialises its
weights in place from the job's seed, makes it the only active adapter, trains through the slot's one compiled
forward, saves it, and zeroes it again, so no user's weights stay behind. Only the UNet trains this way: a recipe
with text-encoder LoRAs uses the per-job adapter.

Create it after the pipeline's ``LoraSlot`` (whose adapter stays the active one between jobs) and before compiling
the pipeline for serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pipeline.diffusion.acceleration import REGIONAL_SCOPES, check_compile_scope, compile_regionally
from pipeline.diffusion.adapters import (
    UNET_ATTENTION_TARGETS,
    restore_active_adapters,
    skip_lora_input_casts,
    snapshot_active_adapters,
)
from pipeline.diffusion.training.graphs import TrainingGraphs

__all__ = ["TRAINING_ADAPTER", "TrainingSlot", "dynamic_token_count", "needs_gradient_on_entry", "reset_lora"]

TRAINING_ADAPTER = "headshot-training-slot"


class TrainingSlot:
    """A persistent training LoRA of ``rank`` on ``pipe``'s UNet, with one compiled forward."""

    def __init__(
        self,
        pipe: Any,
        *,
        rank: int,
        target_modules: Sequence[str] = UNET_ATTENTION_TARGETS,
        compile_backend: str = "inductor",
        compile_scope: str = "unet",
        cuda_graphs: bool = False,
    ) -> None:
        import torch
        from peft import LoraConfig

        from pipeline.diffusion.geglu import use_geglu_operator
        from pipeline.diffusion.group_norm import use_group_norm_operator
        from pipeline.diffusion.lora_linear import use_lora_operator

        # 1. Check inputs: the adapter must start inactive, which needs another adapter (the LoraSlot's) to be active.
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, but is {rank!r}.")
        check_compile_scope(compile_scope)
        unet = pipe.unet
        active = snapshot_active_adapters(pipe)
        if not active.get("unet"):
            raise ValueError(
                "TrainingSlot needs an active adapter on the UNet to hand back to between jobs; create the "
                "pipeline's LoraSlot first."
            )
        if TRAINING_ADAPTER in (getattr(unet, "peft_config", None) or {}):
            raise ValueError("This pipeline already has a TrainingSlot; make one per pipeline.")
        self.pipe = pipe
        self.rank = rank
        self.target_modules = tuple(target_modules)

        # 2. Attach once, in float32 (the weights that train), then hand activity back and zero it.
        config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(target_modules))
        unet.add_adapter(config, adapter_name=TRAINING_ADAPTER)
        restore_active_adapters(pipe, active)
        self.parameters = [param for name, param in unet.named_parameters() if f".{TRAINING_ADAPTER}." in name]
        for param in self.parameters:
            param.data = param.data.float()
        if unet.device.type == "cuda" and unet.dtype in (torch.float16, torch.bfloat16):
            skip_lora_input_casts(unet, TRAINING_ADAPTER)  # train_lora runs a half model on CUDA under autocast
        # SDXL's feed-forward gates train through one operator whose backward reads each value once (``geglu``),
        # its group norms through one whose moments many programs reduce (``group_norm``), its LoRA'd projections
        # through one that adds the LoRA's product and input gradient into the base layer's (``lora_linear``; on a
        # plain frozen ``nn.Linear`` only: FP8 training's layers keep peft's forward); rendering, with no gradients,
        # keeps diffusers', torch's and peft's own maths.
        use_geglu_operator(unet)
        use_group_norm_operator(unet)
        use_lora_operator(unet)
        # ``cuda_graphs``: every job's steps replayed from graphs kept here (``training.graphs``), one per batch shape.
        self.graphs = TrainingGraphs(self.parameters) if cuda_graphs else None
        self.clear()

        # 3. One forward for every job; ``unet.forward``, not ``unet(...)``: a serving-compiled UNet keeps its graphs.
        #    Scopes "blocks" and "regions" compile parts of the UNet instead, shared with rendering (their graphs
        #    with gradients on are the training ones): minutes of compiling less than the whole forward.
        self.forward: Callable[..., Any] = unet.forward
        if compile_scope in REGIONAL_SCOPES:
            needs_gradient_on_entry(unet)
            dynamic_token_count(unet)
            compile_regionally(unet, compile_scope, backend=compile_backend)
        else:
            self.forward = torch.compile(unet.forward, backend=compile_backend)

    def check(self, rank: int, target_modules: Sequence[str], text_encoder_lora: bool) -> None:
        """Raise ``ValueError`` naming what differs when a recipe cannot train in this slot."""
        if rank != self.rank:
            raise ValueError(f"The recipe's rank is {rank}, but this worker's TrainingSlot has rank {self.rank}.")
        if tuple(target_modules) != self.target_modules:
            raise ValueError(
                f"The recipe targets {tuple(target_modules)}, but this worker's TrainingSlot targets "
                f"{self.target_modules}."
            )
        if text_encoder_lora:
            raise ValueError("A TrainingSlot trains the UNet only; train text-encoder LoRAs without one.")

    @contextlib.contextmanager
    def plain_steps(self) -> Iterator[None]:
        """Jobs inside the block step from Python, not from the slot's graphs (a calibration that records in eager
        code must neither replay a graph nor leave one captured in its state)."""
        graphs, self.graphs = self.graphs, None
        try:
            yield
        finally:
            self.graphs = graphs

    def reset(self) -> None:
        """Fresh LoRA weights from torch's global RNG (callers seed it), as ``reset_lora`` draws them."""
        reset_lora([self.pipe.unet], TRAINING_ADAPTER)

    def clear(self) -> None:
        """Zero every weight of the slot and its kept gradients, and freeze it (a finished job's LoRA must not stay in
        memory)."""
        import torch

        with torch.no_grad():
            for param in self.parameters:
                param.zero_()
                param.requires_grad_(False)
        if self.graphs is not None:
            self.graphs.clear()


def needs_gradient_on_entry(unet: Any) -> int:
    """Make every transformer of ``unet`` (``Transformer2DModel``) take its input as needing a gradient when gradients
    are on, as every one but the first does anyway (a LoRA'd block comes before it); return how many transformers.

    The first one's input comes from frozen layers only, so its blocks' graphs were traced apart: one forward and
    backward more to compile for each bucket's shape. The tiny model's first training job took 14.5 s against 17.2 s
    with its compile on the dev box (``python -m bench.slot_compile``, BENCHMARKS.md 2026-12-05 eleventh session).
    Its input becomes a leaf that needs a gradient (detached: the gradient stops there), which costs the backward one
    transformer's input gradient that nothing reads, a few GEMMs of SDXL's narrowest level. The LoRA's gradients are
    the same. Eager, before the blocks: a hook inside a compiled block would be traced into its graph."""
    import torch

    def entry(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not torch.is_grad_enabled() or hidden is None or hidden.requires_grad:
            return None
        leaf = hidden.detach().requires_grad_()
        return ((leaf, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": leaf})

    transformers = _transformers(unet)
    for transformer in transformers:
        transformer.register_forward_pre_hook(entry, with_kwargs=True)
    return len(transformers)


def dynamic_token_count(unet: Any) -> int:
    """Have the transformer blocks' graphs take the token count as a size from their first call: mark it dynamic on
    each transformer's first block input; return how many transformers.

    Left to torch's default, a worker's first training bucket compiled the blocks for its own token count and the
    second compiled them again with the count symbolic: two compiles of each block graph in a start. Rendering's
    graphs, traced after those, took the count symbolic from their first look on (torch keeps one record of the sizes
    that changed per function, whatever the grad mode). Marked from the first call, training compiles once and
    rendering as before: the tiny model's second bucket compiled nothing, and its warm-up's block graphs went from
    three to two (BENCHMARKS.md, 2026-12-05 twelfth session). Marked for training only, rendering's first look would
    compile static and an upscale again. Only where ``proj_in`` is a linear layer does its output enter the first
    block unchanged (SDXL's); each later block takes the block before's output, whose count the graph holds as a size.
    A hook on ``proj_in``, eager under "blocks"; under "regions" the glue that calls it is compiled (symbolic sizes
    already), so the hook marks nothing there and the blocks compile as torch's default has them.

    Rendering's calls (gradients off) mark the batch too, on the blocks' input and on the prompt's embeddings they
    attend to: a request's CFG batch of 8 and its remainder's batch of 4 then share one graph. Torch made the batch
    symbolic only once it saw two; where training's batch equals a request's CFG batch (8 on an 80 GB card), the
    warm-up's second batch compiled every block again (15-16 s of an H100's cold start, BENCHMARKS.md 2026-12-05
    thirteenth session). Training keeps its one batch static: its steps replay fixed shapes."""
    import torch

    def tokens(module: Any, args: tuple[Any, ...], output: Any) -> None:
        if not torch.compiler.is_compiling():  # under "regions" the glue around proj_in is compiled: no mark traced
            torch._dynamo.maybe_mark_dynamic(output, 1)
            if not torch.is_grad_enabled():
                torch._dynamo.maybe_mark_dynamic(output, 0)

    def prompt_batch(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        embeddings = kwargs.get("encoder_hidden_states")
        if embeddings is not None and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            torch._dynamo.maybe_mark_dynamic(embeddings, 0)

    transformers = [module for module in _transformers(unet) if getattr(module, "use_linear_projection", False)]
    for transformer in transformers:
        transformer.proj_in.register_forward_hook(tokens)
        transformer.register_forward_pre_hook(prompt_batch, with_kwargs=True)
    return len(transformers)


def _transformers(unet: Any) -> list[Any]:
    """``unet``'s transformers (``Transformer2DModel``), whose blocks a regional scope compiles."""
    return [module for module in unet.modules() if type(module).__name__ == "Transformer2DModel"]


def reset_lora(models: Iterable[Any], adapter: str) -> None:
    """Gaussian A (std 1/rank) and zero B for ``adapter`` on every layer of ``models``, in module order.

    Both ways of training draw their initial weights here, from torch's global RNG, so a seed gives the same LoRA
    whether it trains in a fresh adapter or in a ``TrainingSlot`` (attaching an adapter draws numbers of its own).
    """
    import torch

    with torch.no_grad():
        for model in models:
            for module in model.modules():
                if adapter in getattr(module, "lora_A", {}):
                    module.reset_lora_parameters(adapter, "gaussian")
