"""The project's Triton kernels where their tests can run them: on a GPU as the operators call them, elsewhere in
Triton's interpreter, in a process of its own.

``TRITON_INTERPRET=1`` must be set before triton is first imported: triton's own library functions (``tl.sum``
among them) are made then, and importing torch imports triton, so a test process cannot switch to the interpreter.
The interpreter takes each program in turn, so there the kernel module runs with small tile constants: a small
tensor then spans the many programs, partial tiles and combining windows that the GPU's tiles need large ones for.

As a program: ``python -m tests.pipeline.triton_kernels CALLS RESULTS`` loads (module, tile constants, calls) from
the torch file CALLS, runs the calls in order and saves their results to RESULTS.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["KernelRunner", "naming"]

ROOT = Path(__file__).resolve().parents[2]


class KernelRunner:
    """``run([(function, args), ...])``: the results of ``module``'s functions on ``device``'s tensors, and
    ``tiles``, the tile constants they ran with (the module's own on a GPU, ``small_tiles`` in the interpreter). On a
    GPU each call's outputs land in memory filled with NaN first."""

    def __init__(self, module: str, small_tiles: dict[str, int], workdir: Path) -> None:
        self.module = module if "." in module else f"pipeline.diffusion.{module}"  # a bench kernel by its full name
        self.workdir = workdir
        self.interpreted = not torch.cuda.is_available()
        if self.interpreted and importlib.util.find_spec("triton") is None:
            raise LookupError("the Triton kernels need triton: `make test` installs it")
        self.device = "cpu" if self.interpreted else "cuda"
        if self.interpreted:
            self.tiles = dict(small_tiles)
        else:
            loaded = importlib.import_module(self.module)
            self.tiles = {name: getattr(loaded, name) for name in small_tiles}

    def run(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        if not self.interpreted:
            loaded = importlib.import_module(self.module)
            results = []
            for function, args in calls:
                # NaN in the allocator's free blocks right before each call, at least twice what its tensors hold:
                # an output element its kernels do not write then fails the comparison.
                elements = sum(arg.numel() for arg in args if isinstance(arg, torch.Tensor))
                torch.full((4 * elements,), float("nan"), device="cuda", dtype=torch.bfloat16)
                results.append(getattr(loaded, function)(*args))
            return results
        calls_path, results_path = self.workdir / "calls.pt", self.workdir / "results.pt"
        torch.save({"module": self.module, "tiles": self.tiles, "calls": calls}, calls_path)
        env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "tests.pipeline.triton_kernels", str(calls_path), str(results_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"the interpreted kernels failed:\n{done.stderr[-4000:]}")
        results: list[Any] = torch.load(results_path)
        return results


def naming(case: str) -> Callable[[str], str]:
    """``torch.testing.assert_close``'s ``msg`` for one of a test's cases: its message, led by the case."""
    return lambda message: f"{case}: {message}"


def main(calls_path: str, results_path: str) -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("Set TRITON_INTERPRET=1: this runs the kernels in Triton's interpreter.")
    spec = torch.load(calls_path)
    module = importlib.import_module(spec["module"])
    for name, value in spec["tiles"].items():
        if not isinstance(getattr(module, name, None), int):
            raise SystemExit(f"{spec['module']} has no integer tile constant {name!r}.")
        setattr(module, name, value)
    torch.save([getattr(module, function)(*args) for function, args in spec["calls"]], results_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
