"""Per-GPU utilisation and memory, sampled from ``nvidia-smi`` in the background while a measurement runs.

``nvidia-smi`` rather than torch: the process that measures never touches the GPUs the workers own.
Without ``nvidia-smi`` (a CPU machine) the sampler records nothing and says so by returning empty dicts.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from types import TracebackType

__all__ = ["GpuSampler"]

QUERY = ["--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]


class GpuSampler:
    """``with GpuSampler(2): ...`` samples GPUs 0 and 1 every ``interval_ms`` until the block ends."""

    def __init__(self, gpus: int, interval_ms: int = 500) -> None:
        self._gpus = gpus
        self._interval_ms = interval_ms
        self._samples: dict[str, list[tuple[float, float]]] = {}
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @staticmethod
    def count_gpus() -> int:
        """GPUs ``nvidia-smi`` lists; 0 without one (CUDA_VISIBLE_DEVICES is not consulted: workers get pinned)."""
        if shutil.which("nvidia-smi") is None:
            return 0
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))

    def __enter__(self) -> GpuSampler:
        if self._gpus and shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", *QUERY, f"-lms={self._interval_ms}"], stdout=subprocess.PIPE, text=True
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) != 3:
                continue
            try:
                index, utilisation, memory = parts[0], float(parts[1]), float(parts[2])
            except ValueError:  # "[N/A]" on GPUs that do not report a field
                continue
            if int(index) < self._gpus:
                self._samples.setdefault(f"gpu{index}", []).append((utilisation, memory))

    def mean_utilisation(self) -> dict[str, float]:
        """Mean ``utilization.gpu`` (% of time a kernel ran) per GPU over the block."""
        return {gpu: round(sum(u for u, _ in rows) / len(rows), 1) for gpu, rows in sorted(self._samples.items())}

    def peak_memory_mib(self) -> dict[str, float]:
        return {gpu: max(m for _, m in rows) for gpu, rows in sorted(self._samples.items())}
