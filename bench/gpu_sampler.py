"""Per-GPU utilisation, memory, SM clock, power and temperature, sampled from ``nvidia-smi`` in the background while
a measurement runs. The clocks are there because one H200 ran the same requests 10-30% slower than two others
(BENCHMARKS.md, 2026-12-04 third session), and only a clock held down (power, heat) would show such a machine.

``nvidia-smi`` rather than torch: the process that measures never touches the GPUs the workers own.
Without ``nvidia-smi`` (a CPU machine) the sampler records nothing and says so by returning empty dicts.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from datetime import datetime
from types import TracebackType
from typing import NamedTuple

__all__ = ["GpuSample", "GpuSampler", "parse_sample"]

FIELDS = "timestamp,index,utilization.gpu,memory.used,clocks.sm,power.draw,temperature.gpu"
TIMESTAMP = "%Y/%m/%d %H:%M:%S.%f"  # nvidia-smi's "timestamp", in the host's local time
QUERY = [f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"]


class GpuSample(NamedTuple):
    gpu: str  # "gpu0"
    utilisation: float  # % of the interval a kernel ran
    memory_mib: float
    sm_mhz: float | None  # None where the GPU does not report it ("[N/A]")
    power_w: float | None
    temperature_c: float | None
    at: float | None = None  # when nvidia-smi took it, seconds since the epoch (``time.time()``'s clock)


def parse_sample(line: str) -> GpuSample | None:
    """One line of the query's CSV, or None for a line without an index, utilisation and memory."""
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != len(FIELDS.split(",")):
        return None
    stamp, *parts = parts
    try:
        at: float | None = datetime.strptime(stamp, TIMESTAMP).timestamp()
    except ValueError:
        at = None

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:  # "[N/A]", "[Not Supported]"
            return None

    index, utilisation, memory, *rest = parts
    used, busy = number(memory), number(utilisation)
    if not index.isdigit() or used is None or busy is None:
        return None
    sm_mhz, power_w, temperature_c = (number(text) for text in rest)
    return GpuSample(f"gpu{index}", busy, used, sm_mhz, power_w, temperature_c, at)


class GpuSampler:
    """``with GpuSampler(2): ...`` samples GPUs 0 and 1 every ``interval_ms`` until the block ends."""

    def __init__(self, gpus: int, interval_ms: int = 500) -> None:
        self._gpus = gpus
        self._interval_ms = interval_ms
        self._samples: dict[str, list[GpuSample]] = {}
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
            self.record(line)

    def record(self, line: str) -> None:
        """Keep one line of ``nvidia-smi``'s output, if it is a sample of one of this sampler's GPUs."""
        sample = parse_sample(line)
        if sample is not None and int(sample.gpu.removeprefix("gpu")) < self._gpus:
            self._samples.setdefault(sample.gpu, []).append(sample)

    def mean_utilisation(self) -> dict[str, float]:
        """Mean ``utilization.gpu`` (% of time a kernel ran) per GPU over the block."""
        return {
            gpu: round(statistics.fmean(s.utilisation for s in rows), 1) for gpu, rows in sorted(self._samples.items())
        }

    def peak_memory_mib(self) -> dict[str, float]:
        return {gpu: max(s.memory_mib for s in rows) for gpu, rows in sorted(self._samples.items())}

    def clocks(self) -> dict[str, dict[str, float]]:
        """Per GPU over the block: the SM clock's lowest and median MHz, mean power (W) and hottest temperature (C),
        each only where the GPU reported it."""
        return {gpu: _clocks(rows) for gpu, rows in sorted(self._samples.items())}

    def clocks_between(self, gpu: str, start: float, end: float) -> dict[str, float]:
        """``clocks`` of one GPU over the samples taken from ``start`` to ``end`` (``time.time()`` seconds): what the
        GPU ran at during one job's section, e.g. the first request after a training against the others."""
        rows = [s for s in self._samples.get(gpu, []) if s.at is not None and start <= s.at <= end]
        return {"samples": len(rows), **_clocks(rows)}


def _clocks(rows: list[GpuSample]) -> dict[str, float]:
    mhz = [s.sm_mhz for s in rows if s.sm_mhz is not None]
    watts = [s.power_w for s in rows if s.power_w is not None]
    degrees = [s.temperature_c for s in rows if s.temperature_c is not None]
    figures: dict[str, float] = {}
    if mhz:
        figures.update(sm_mhz_min=min(mhz), sm_mhz_median=statistics.median(mhz))
    if watts:
        figures["power_w_mean"] = round(statistics.fmean(watts), 1)
    if degrees:
        figures["temperature_c_max"] = max(degrees)
    return figures
