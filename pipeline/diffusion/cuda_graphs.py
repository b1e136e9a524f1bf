"""Replaying the UNet's denoising calls from CUDA graphs: one graph per call shape, captured when the shape first
renders (a worker's warm-up renders every shape it serves), then replayed at every step of every request.

Why: even compiled, a UNet call is launched from Python region by region, and the pipeline's host work between
steps (scheduler, guidance, callbacks) leaves the GPU waiting: 16% of a request's wall time was GPU idle
(BENCHMARKS.md, 2026-12-02 fourth session). A replay launches the whole call at once.

A call replays only when it can be the captured one: every tensor argument on the GPU and of the captured shape,
strides and dtype, the other arguments equal, no gradients, eval mode, and every LoRA layer in the adapter state
it was captured in (active, merged and disabled adapters). Anything else (training, an unmerged LoRA, a timestep
given as a number) runs the UNet as before. A graph reads weights from the addresses it was captured with: the
LoRA slot writes a user's merged weights into the same tensors (``lora_slot``) and FP8 copies are refreshed in place
(``float8``), so one graph serves every user; whatever swaps weight tensors for new ones afterwards (``.to()``, a
layout change, a LoRA attached to layers that had none) must ``uninstall`` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_GRAPHS", "DenoiserGraphs", "installed_graphs"]

log = logging.getLogger(__name__)

# Shapes a worker serves: three aspects at two batch sizes, the actions' sizes and the face pass are about a dozen.
# Past this, new shapes run without a graph (and say so once), so a stream of odd shapes cannot fill the GPU.
MAX_GRAPHS = 32


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[Any]  # the captured call's tensor arguments, in flattening order; a call's are copied in
    output: Any  # what the captured call returned, overwritten by every replay


class DenoiserGraphs:
    """Replays ``denoiser``'s calls from CUDA graphs; installed on the module itself.

    It takes the place ``Module.compile`` uses (``_compiled_call_impl``, which ``Module.__call__`` calls when set),
    around the compiled call where the whole denoiser is compiled and around the plain call where regions are, so
    torch.compile never traces it.

    Install after compiling and after every change to the weights' tensors (layout, dtype, LoRA layers), before
    the warm-up renders.
    """

    def __init__(self, denoiser: Any) -> None:
        import torch

        if next(denoiser.parameters()).device.type != "cuda":
            raise ValueError("CUDA graphs need the denoiser on a CUDA device, but it is on the CPU.")
        self._denoiser = denoiser
        self._forward = denoiser._compiled_call_impl or denoiser._call_impl
        self._compiled = denoiser._compiled_call_impl
        self._graphs: dict[Any, _Graph | None] = {}  # None: capture failed, that shape runs as before
        self._pool = torch.cuda.graph_pool_handle()  # one pool: replays are serialised, their scratch can be shared
        self._stream = torch.cuda.Stream(device=next(denoiser.parameters()).device)
        self._lora_layers = [module for module in denoiser.modules() if hasattr(module, "merged_adapters")]
        self._told: set[str] = set()
        self.replays = 0
        denoiser._compiled_call_impl = self

    @property
    def captured(self) -> int:
        """How many call shapes have a graph."""
        return sum(graph is not None for graph in self._graphs.values())

    def uninstall(self) -> None:
        """Give the denoiser its own call back and free the graphs."""
        if self._denoiser._compiled_call_impl is self:
            self._denoiser._compiled_call_impl = self._compiled
        self._graphs.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch
        from torch.utils._pytree import tree_flatten

        if torch.is_grad_enabled() or self._denoiser.training:
            return self._forward(*args, **kwargs)
        leaves, spec = tree_flatten((args, kwargs))
        key = self._key(leaves, spec)
        if key is None:
            return self._forward(*args, **kwargs)
        if key in self._graphs:
            graph = self._graphs[key]
            return self._replay(graph, leaves) if graph is not None else self._forward(*args, **kwargs)
        # A new shape: this call runs as before (it compiles, if the shape is new to the compiled regions too, and
        # tunes cuDNN), then the same call is captured for every later one.
        output = self._forward(*args, **kwargs)
        if len(self._graphs) >= MAX_GRAPHS:
            self._tell(f"{MAX_GRAPHS} call shapes have graphs already; new shapes run without one")
        else:
            self._graphs[key] = self._capture(leaves, spec)
        return output

    def _key(self, leaves: list[Any], spec: Any) -> tuple[Any, ...] | None:
        """What a replay must match, or None where this call cannot replay."""
        import torch

        parts: list[Any] = [str(spec)]
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                if leaf.device.type != "cuda":  # a graph would keep reading the host address it was captured with
                    self._tell("a tensor argument is on the CPU")
                    return None
                parts.append((tuple(leaf.shape), leaf.stride(), leaf.dtype, leaf.device))
            elif leaf is None or isinstance(leaf, (bool, str)):
                parts.append(leaf)
            else:  # a number (a timestep as a float) would be baked into the graph: one graph per value
                self._tell(f"an argument is a {type(leaf).__name__}, not a tensor")
                return None
        parts.append(
            tuple(
                (tuple(layer.active_adapters), tuple(layer.merged_adapters), layer.disable_adapters)
                for layer in self._lora_layers
            )
        )
        return tuple(parts)

    def _capture(self, leaves: list[Any], spec: Any) -> _Graph | None:
        import torch
        from torch.utils._pytree import tree_unflatten

        inputs = [
            torch.empty_strided(leaf.shape, leaf.stride(), dtype=leaf.dtype, device=leaf.device)
            for leaf in leaves
            if isinstance(leaf, torch.Tensor)
        ]
        given = iter(inputs)
        args, kwargs = tree_unflatten(
            [next(given).copy_(leaf) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves], spec
        )
        graph = torch.cuda.CUDAGraph()
        try:
            # One call on the capture stream first: lazily made handles and workspaces come before the capture.
            self._stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._stream):
                self._forward(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(self._stream)
            with torch.cuda.graph(graph, pool=self._pool, stream=self._stream, capture_error_mode="thread_local"):
                output = self._forward(*args, **kwargs)
        except Exception as error:  # a kernel that cannot be captured: the shape keeps running without a graph
            log.warning("a UNet call could not be captured as a CUDA graph (%s); it runs without one", error)
            return None
        return _Graph(graph=graph, inputs=inputs, output=output)

    def _replay(self, graph: _Graph, leaves: list[Any]) -> Any:
        import torch
        from torch.utils._pytree import tree_map

        torch._foreach_copy_(graph.inputs, [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)])
        graph.graph.replay()
        self.replays += 1
        # A copy: the next replay overwrites the graph's output, and scratch memory of other graphs shares its pool.
        return tree_map(lambda value: value.clone() if isinstance(value, torch.Tensor) else value, graph.output)

    def _tell(self, why: str) -> None:
        if why not in self._told:
            self._told.add(why)
            log.info("a UNet call runs without a CUDA graph: %s", why)


def installed_graphs(denoiser: Any) -> DenoiserGraphs | None:
    """The ``DenoiserGraphs`` installed on ``denoiser``, if any."""
    installed = getattr(denoiser, "_compiled_call_impl", None)
    return installed if isinstance(installed, DenoiserGraphs) else None
