"""How a GPU's memory decides the training recipe: batch size, gradient checkpointing and CUDA graphs together."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.diffusion.families import Family

__all__ = ["MemoryPlan", "memory_plan"]


@dataclass(frozen=True)
class MemoryPlan:
    """Batch size, gradient checkpointing and CUDA graphs for a GPU of a given size (SDXL at 1024 px, rank 16)."""

    batch_size: int
    gradient_checkpointing: bool
    cuda_graphs: bool = False  # each bucket's step replayed from a captured graph (``TrainingGraphs``)


# SDXL: batch 8 needs nearly twice batch 4's memory but trains nearly twice as many image-steps/s: the step is bound
# by the host queueing kernels, so a bigger batch does more work per kernel (peaks and rates: BENCHMARKS.md, second
# session). On a 141 GB card batch 16 peaked at 94.5 GiB and trained 21.3 image-steps/s against batch 8's 17.7 (the
# GPU busier: 93% against 80%; BENCHMARKS.md, 2026-12-03); 110 GiB leaves the allocator room above that peak, so an
# 80 GB card stays at batch 8 (50.8 GiB). Below 40 GiB, checkpointing trades compute for memory (a 24 GB card's floor).
# klein 4B at its 1024 px: batch 4 peaked at 83 GiB on an H200 and batch 8 ran out of its 139 (BENCHMARKS.md,
# 2026-12-02); batch 2 below that is half the activations (an estimate, not measured), and below 64 GiB
# checkpointing at batch 1 is the only hope (not measured either). CUDA graphs keep a captured step's activations
# reserved: at batch 16 on an H200 the five buckets' graphs took 94.7 GiB reserved (99.9 with FP8 training) and
# rendering fit beside them (115.7 GiB peak through a customer's 40 headshots, 119.8 with FP8; BENCHMARKS.md,
# 2026-12-04 third session). At an 80 GB card's batch 8 they fit beside rendering without raising the worker's peak,
# and they take Python's launches out of the step, which a slow host's CPU otherwise sets the pace of (an H100 host
# trained at half the rate without them: BENCHMARKS.md, 2026-12-05 fifteenth session). Cards under 72 GiB are not
# measured with them, so they stay off there.
def memory_plan(gpu_memory_gib: float | None, family: Family = Family.SDXL) -> MemoryPlan:
    """The fastest recipe that fits ``gpu_memory_gib`` of GPU memory for ``family``; ``None`` (a CPU) keeps the
    defaults."""
    if family is Family.FLUX2 and gpu_memory_gib is not None:
        if gpu_memory_gib >= 100:
            return MemoryPlan(batch_size=4, gradient_checkpointing=False)
        if gpu_memory_gib >= 64:
            return MemoryPlan(batch_size=2, gradient_checkpointing=False)
        return MemoryPlan(batch_size=1, gradient_checkpointing=True)
    if gpu_memory_gib is None or 40 <= gpu_memory_gib < 72:
        return MemoryPlan(batch_size=4, gradient_checkpointing=False)
    if gpu_memory_gib >= 110:
        return MemoryPlan(batch_size=16, gradient_checkpointing=False, cuda_graphs=True)
    if gpu_memory_gib >= 72:
        return MemoryPlan(batch_size=8, gradient_checkpointing=False, cuda_graphs=True)
    return MemoryPlan(batch_size=4, gradient_checkpointing=True)
