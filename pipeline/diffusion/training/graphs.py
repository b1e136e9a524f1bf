"""Replaying a LoRA training step's forward, loss and backward from CUDA graphs: one graph per batch shape, captured
at that shape's first step (a worker's training warm-up steps every aspect bucket), replayed at every later step.
Inside ``TrainingGraphs.warming()`` a shape's first step only runs its warm-up, and its next step captures it: a
worker warms every bucket that way before it captures any (why: ``warming``'s docstring).

Why: the compiled training call is launched from Python kernel by kernel, and on an H200 the GPU sat idle for part
of it; replayed from one graph the same call took 0.667 s against 0.718 s (BENCHMARKS.md, 2026-12-03 seventh
session).

What a replay computes is what the plain step computes: every random draw happens before it (the loop draws each
batch from its CPU generator) and is copied into the graph's inputs with the prompt's embeddings; the loss is the
graph's output (copied out at each step); the gradients land in tensors this object keeps for the LoRA's weights,
outside the graphs' memory pool and zeroed inside the graph first, so the optimizer, the clipping and the progress
reports run on them as they do on plain gradients. A graph reads the weights from the addresses it was captured
with: the base is frozen, the LoRA's weights are updated and re-initialised in place, FP8 copies refreshed in place.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_GRAPHS", "TrainingGraphs"]

log = logging.getLogger(__name__)

# A worker trains 5 aspect buckets at one batch size; past this, new shapes train without a graph.
MAX_GRAPHS = 16
WARM_UP_RUNS = 2  # plain runs on the capture stream before a capture: lazily made handles and workspaces


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: dict[str, Any]  # the step's tensors; a step's are copied in
    loss: Any  # the captured step's loss, rewritten by every replay
    loss_of: Any  # kept alive: the graph reads what it holds (a noise schedule's tables on the GPU) by address


class TrainingGraphs:
    """Training steps of the LoRA weights ``parameters`` replayed from CUDA graphs, one per batch shape."""

    def __init__(self, parameters: list[Any]) -> None:
        import torch

        device = parameters[0].device if parameters else None
        if device is None or device.type != "cuda":
            raise ValueError(
                f"CUDA graphs for training need the LoRA's weights on a CUDA device, but they are on {device}; "
                "leave HEADSHOT_TRAIN_CUDA_GRAPHS off on a worker without a CUDA GPU."
            )
        self.device = device
        self._parameters = parameters
        self.gradients = [torch.zeros_like(param) for param in parameters]
        self._graphs: dict[Any, _Graph] = {}
        self._warmed: set[Any] = set()  # shapes whose warm-up runs are done: their next step captures at once
        self._warming = False
        self._pool = torch.cuda.graph_pool_handle()  # steps are serialised, so their scratch can be shared
        self._stream = torch.cuda.Stream(device=device)
        self._told = False

    @property
    def captured(self) -> int:
        """How many batch shapes have a graph."""
        return len(self._graphs)

    def attach(self) -> None:
        """Point every LoRA weight's ``.grad`` at the kept gradients (the tensors the graphs write)."""
        for param, gradient in zip(self._parameters, self.gradients, strict=True):
            param.grad = gradient

    @contextlib.contextmanager
    def warming(self) -> Iterator[None]:
        """Inside, a new shape's step runs its warm-up only (plain runs on the capture stream, compiling what is new)
        and captures nothing; its next step outside captures it without warm-up runs. On leaving, the memory those
        runs cached goes back to the device.

        Why: a captured graph keeps its memory pool (83 GiB at batch 16 on an H200), and the plain runs of a shape
        warmed after it need as much again outside that pool: a worker warming its five buckets graph by graph ran
        out of memory at the second (BENCHMARKS.md, 2026-12-03 eighth session). Warmed first, the shapes are captured
        one after another into the one pool, each capture reusing the memory the one before it freed there."""
        import torch

        self._warming = True
        try:
            yield
        finally:
            self._warming = False
            torch.cuda.empty_cache()

    def clear(self) -> None:
        """Zero the kept gradients: a finished job's gradients must not stay in memory."""
        import torch

        torch._foreach_zero_(self.gradients)

    def step(
        self, loss_of: Callable[..., Any], tensors: dict[str, Any], *, autocast_dtype: Any, recipe: Hashable = ()
    ) -> Any:
        """One step's loss and gradients (in ``.grad``) from ``loss_of(**tensors)`` under autocast in
        ``autocast_dtype``, from this shape's graph, captured now if it is new. Returns a copy of the loss.

        A graph replays the ``loss_of`` it was captured with: ``recipe`` names whatever else of it can change between
        calls (the objective's numbers), so a different one gets a graph of its own."""
        import torch

        shapes = tuple((name, tuple(value.shape), value.stride(), value.dtype) for name, value in tensors.items())
        key = (shapes, autocast_dtype, recipe)
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= MAX_GRAPHS:
                if not self._told:
                    self._told = True
                    log.info("%d training shapes have graphs already; new shapes train without one", MAX_GRAPHS)
                return self._run(loss_of, tensors, autocast_dtype)
            if self._warming:
                loss = self._warm_up(loss_of, tensors, autocast_dtype)
                self._warmed.add(key)
                return loss.detach().clone()
            graph = self._graphs[key] = self._capture(loss_of, tensors, autocast_dtype, warm=key not in self._warmed)
            self._warmed.discard(key)
        names = list(graph.inputs)
        torch._foreach_copy_([graph.inputs[name] for name in names], [tensors[name] for name in names])
        graph.graph.replay()
        return graph.loss.detach().clone()

    def _run(self, loss_of: Callable[..., Any], tensors: dict[str, Any], autocast_dtype: Any) -> Any:
        """The step as the graph holds it: gradients zeroed in place, forward under autocast (without its weight
        cache, whose casts would be memory the graph does not own), backward into the kept gradients."""
        import torch

        self.attach()
        torch._foreach_zero_(self.gradients)
        with torch.autocast("cuda", dtype=autocast_dtype, cache_enabled=False):
            loss = loss_of(**tensors)
        loss.backward()
        return loss

    def _warm_up(self, loss_of: Callable[..., Any], tensors: dict[str, Any], autocast_dtype: Any) -> Any:
        """``WARM_UP_RUNS`` plain runs on the capture stream; the last one's loss."""
        import torch

        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            for _ in range(WARM_UP_RUNS):
                loss = self._run(loss_of, tensors, autocast_dtype)
        torch.cuda.current_stream().wait_stream(self._stream)
        return loss

    def _capture(
        self, loss_of: Callable[..., Any], tensors: dict[str, Any], autocast_dtype: Any, *, warm: bool
    ) -> _Graph:
        import torch

        inputs = {name: value.detach().clone() for name, value in tensors.items()}
        if warm:
            self._warm_up(loss_of, inputs, autocast_dtype)
        else:  # warmed inside ``warming()``: the inputs' copies are made on this stream, the capture's is another
            self._stream.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        # thread_local, as rendering's graphs capture: a worker's other threads (its event loop's GPU queries for the
        # heartbeat) go on while a job captures a new shape; autograd's own thread launches onto the capture stream.
        with torch.cuda.graph(graph, pool=self._pool, stream=self._stream, capture_error_mode="thread_local"):
            loss = self._run(loss_of, inputs, autocast_dtype)
        shape = tuple(next(iter(inputs.values())).shape)
        reserved = torch.cuda.memory_reserved(self._stream.device) / 2**30  # the graphs' pool stays reserved
        log.info("a training step of shape %s captured as a CUDA graph (%.1f GiB reserved now)", shape, reserved)
        return _Graph(graph=graph, inputs=inputs, loss=loss, loss_of=loss_of)
