"""The project's Triton kernels where their tests can run them: on a GPU as the operators call them, elsewhere in
Triton's interpreter, in a process of its own.

``TRITON_INTERPRET=1`` must be set before triton is first imported: triton's own library functions (``tl.sum``
among them) are made then, and importing torch imports triton, so a test process cannot switch to the interpreter.
The interpreter takes each program in turn, so there the kernel module runs with small tile constants: a small
tensor then spans the many programs, partial tiles and combining windows that the GPU's tiles need large ones for.

As a program: ``python -m tests.pipeline.triton_kernels CALLS RESULTS`` loads (module, tile constants, calls) from
the torch file CALLS, runs the calls in order and saves their results to RESULTS.

``compile_launches`` builds the kernels for a GPU on any machine: Triton's compiler (to PTX, and ptxas to a cubin,
both in triton's wheel) needs no GPU, so a kernel that the interpreter runs but the GPU's compiler refuses fails there.
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

__all__ = ["H200", "KernelRunner", "compile_launches", "naming"]

ROOT = Path(__file__).resolve().parents[2]


class KernelRunner:
    """``run([(function, args), ...])``: the results of ``module``'s functions on ``device``'s tensors, and
    ``tiles``, the tile constants they ran with (the module's own on a GPU, ``small_tiles`` in the interpreter). On a
    GPU each call's outputs land in memory filled with NaN first."""

    def __init__(self, module: str, small_tiles: dict[str, int], workdir: Path) -> None:
        self.module = f"pipeline.diffusion.{module}"
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


# An H200's (and an H100's) compute capability, 9.0, and warp size.
H200 = ("cuda", 90, 32)

_TYPES = {
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float32: "fp32",
    torch.float8_e4m3fn: "fp8e4nv",
    torch.float8_e5m2: "fp8e5",
    torch.int32: "i32",
    torch.int64: "i64",
}


class _Launch:
    """Stands in for one kernel: records each ``kernel[grid](*args, **options)`` instead of running it."""

    def __init__(self, kernel: Any, launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> None:
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        return lambda *args, **options: self.launches.append((self.kernel, args, options))


def _signature(
    kernel: Any, args: tuple[Any, ...], options: dict[str, Any]
) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int], list[list[Any]]]]:
    """Triton's signature of one launch (each argument's type, "constexpr" for the tile sizes), its constants, and the
    attributes Triton's launcher specialises on: a pointer 16-byte aligned (a real allocation is) and an integer
    divisible by 16 compile as such, which lets the compiler vectorise their loads."""
    values = dict(zip(kernel.arg_names, args, strict=False))
    values.update({name: value for name, value in options.items() if name in kernel.arg_names})
    signature, constants, attributes = {}, {}, {}
    for index, param in enumerate(kernel.params):
        value = values[param.name]
        if param.is_constexpr:
            signature[param.name], constants[param.name] = "constexpr", value
            continue
        if isinstance(value, torch.Tensor):
            signature[param.name] = "*" + _TYPES[value.dtype]
            aligned = value.storage_offset() * value.element_size() % 16 == 0
        elif isinstance(value, float):
            signature[param.name], aligned = "fp32", False
        else:
            signature[param.name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            aligned = value % 16 == 0
        if aligned:
            attributes[(index,)] = [["tt.divisibility", 16]]
    return signature, constants, attributes


def compile_launches(module: str, calls: list[tuple[str, tuple[Any, ...]]], target: tuple[str, int, int]) -> list[Any]:
    """Compile, for ``target`` (backend, compute capability, warp size), every kernel launch that ``module``'s
    ``calls`` make, with the argument types, sizes and tile constants they launch with; returns the compiled kernels
    (their ``asm`` holds the PTX and the cubin). The calls run on meta tensors, so real sizes cost no memory."""
    import triton  # type: ignore[import-not-found,unused-ignore]
    from triton.backends.compiler import GPUTarget  # type: ignore[import-not-found,unused-ignore]
    from triton.compiler import ASTSource  # type: ignore[import-not-found,unused-ignore]
    from triton.runtime.jit import JITFunction  # type: ignore[import-not-found,unused-ignore]

    loaded = importlib.import_module(f"pipeline.diffusion.{module}")
    kernels = {name: value for name, value in vars(loaded).items() if isinstance(value, JITFunction)}
    launches: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    try:  # only while the host code runs: the kernels' own calls to helpers resolve through these names too
        for name, kernel in kernels.items():
            setattr(loaded, name, _Launch(kernel, launches))
        for function, args in calls:
            getattr(loaded, function)(*args)
    finally:
        for name, kernel in kernels.items():
            setattr(loaded, name, kernel)
    compiled = []
    for kernel, args, options in launches:
        signature, constants, attributes = _signature(kernel, args, options)
        source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attributes)
        settings = {name: value for name, value in options.items() if name not in kernel.arg_names}
        compiled.append(triton.compile(source, target=GPUTarget(*target), options=settings))
    return compiled


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
