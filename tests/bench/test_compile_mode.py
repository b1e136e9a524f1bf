"""A benchmark's other compile mode: inductor's options for that mode inside the block, the worker's outside."""

from __future__ import annotations

import pytest
import torch._inductor.config as inductor

from bench.compile_mode import compile_mode


def test_an_autotuning_mode_sets_inductors_options_only_inside_the_block() -> None:
    with compile_mode("max-autotune"):
        assert inductor.max_autotune and inductor.coordinate_descent_tuning and not inductor.epilogue_fusion
    assert not inductor.max_autotune and inductor.epilogue_fusion
    with compile_mode("default"):
        assert not inductor.max_autotune and not inductor.triton.cudagraphs
    with compile_mode("tuned"):  # the worker's mode, its Triton kernels tuned: no GEMM autotuning, no CUDA graphs
        assert inductor.coordinate_descent_tuning and not inductor.max_autotune and not inductor.triton.cudagraphs
        assert inductor.triton.persistent_reductions
    with compile_mode("tuned-looped"):  # and the reductions' tiles with them
        assert inductor.coordinate_descent_tuning and not inductor.triton.persistent_reductions
    assert not inductor.coordinate_descent_tuning and inductor.triton.persistent_reductions


def test_an_unknown_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="but is 'fast'"), compile_mode("fast"):
        pass
