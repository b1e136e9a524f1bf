"""The real ``headshot-worker`` processes of one phase: their environment (queue, model, GPU pinning), start, the
wait until each is ready to serve, and stop."""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from bench.scaleout.plan import EVENTS_STREAM, QUEUE_NAME, ScaleoutPlan
from bench.worker_ready import start_phases

__all__ = [
    "die_with_parent",
    "logged_stages",
    "request_gpu_windows",
    "start_workers",
    "stop_workers",
    "wait_until_ready",
    "worker_env",
]

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_env(plan: ScaleoutPlan, index: int, workers: int, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "HEADSHOT_MODEL": plan.model,
        "HEADSHOT_DATA_DIR": str(data_dir),
        "HEADSHOT_STORAGE_DIR": str(data_dir / "storage"),
        "HEADSHOT_QUEUE_NAME": QUEUE_NAME,
        "HEADSHOT_EVENTS_STREAM": EVENTS_STREAM,
        "HEADSHOT_TRAIN_STEPS": str(plan.train_steps),
        "HEADSHOT_PROGRESS_INTERVAL_S": "30",
        "HEADSHOT_WORKER_JOBS": str(plan.jobs_per_worker),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("HEADSHOT_WORKER_METRICS_PORT", None)  # k workers on one host cannot share one metrics port
    if plan.inference_steps:
        env["HEADSHOT_INFERENCE_STEPS"] = str(plan.inference_steps)
    if plan.gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(index % plan.gpus)
    else:
        # CPU workers share the cores; unpinned OpenMP pools spin against each other and crawl.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


def start_workers(plan: ScaleoutPlan, workers: int, redis_url: str, data_dir: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(workers):
        log_file = (data_dir / f"worker-{index}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobs.worker.main"],
                env=worker_env(plan, index, workers, redis_url, data_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        )
    return processes


def die_with_parent() -> None:
    """In a child before it runs: Linux sends it SIGTERM (a worker's graceful stop) when its parent dies.

    Why: a driver killed from outside (``timeout`` on a GPU machine) left its worker running with 115 GiB of the
    GPU reserved, and the next run there ran out of memory at start (BENCHMARKS.md, 2026-12-04 third session)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


async def wait_until_ready(
    processes: list[subprocess.Popen[bytes]], data_dir: Path, timeout_s: float
) -> dict[str, list[float]]:
    """Wait until every worker has finished starting up (compiling included, so no burst pays for a compile) and takes
    jobs (so a customer's first job meets a warm worker, not the start's last steps); return each one's model-load
    and start-up seconds ("ready to serve", the model's), read from its log. A worker that exits fails the phase."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        figures: dict[str, list[float]] = {"model_load_s": [], "ready_s": []}
        taking_jobs = 0
        for index, process in enumerate(processes):
            log_text = (data_dir / f"worker-{index}.log").read_text(errors="replace")
            if process.poll() is not None:
                tail = log_text[-3000:]
                raise RuntimeError(f"worker {index} exited with {process.returncode} while starting:\n{tail}")
            # A line's message follows the logger's name (jobs.logging_setup.TEXT_FORMAT): read as a start's phases.
            phases = start_phases([line.partition(": ")[2] for line in log_text.splitlines()])
            for key, phase in (("model_load_s", "model"), ("ready_s", "ready")):
                if phase in phases:
                    figures[key].append(phases[phase])
            taking_jobs += "taking jobs" in phases
        if len(figures["ready_s"]) == len(processes) == taking_jobs:
            return figures
        await asyncio.sleep(0.5)
    raise TimeoutError(f"workers were not ready within {timeout_s:.0f} s; see {data_dir}/worker-*.log")


# What the worker logs at the end of each job (jobs/worker/render_job.py, pipeline/diffusion/training/loop.py).
_REQUEST_GPU = re.compile(r"rendered \d+ headshots in [0-9.]+ s: .*?\bGPU ([0-9.]+) s")
_TRAINING = re.compile(r"trained (\d+) image-steps in ([0-9.]+) s: .* the other (\d+) steps ([0-9.]+) s")


def logged_stages(data_dir: Path, workers: int) -> dict[str, dict[str, float]]:
    """Seconds the workers' logs give inside their jobs, across ``workers`` logs: "request GPU" (each request's GPU
    section: the render, its decode included) and "training steps" (each training's steps after its first, which
    the loop times apart) with their image-steps per second. The warm-up's own one-step trainings are left out: they
    end before "ready to serve"."""
    gpu: list[float] = []
    steps: list[float] = []
    rates: list[float] = []
    for _, line in _serving_lines(data_dir, workers):
        if found := _REQUEST_GPU.search(line):
            gpu.append(float(found[1]))
        elif (found := _TRAINING.search(line)) and int(found[3]) > 0:
            image_steps, other_steps, seconds = int(found[1]), int(found[3]), float(found[4])
            steps.append(seconds)
            # The first step's images are outside these seconds: it trains image_steps / (other_steps + 1).
            rates.append(image_steps * other_steps / (other_steps + 1) / seconds)
    stages = {}
    if gpu:
        stages["request GPU"] = _summary(gpu)
    if steps:
        stages["training steps"] = {**_summary(steps), "image_steps_per_s": round(statistics.median(rates), 2)}
    return stages


# A request's line with the time the worker wrote it (its logging's asctime, local time) and its first two laps.
_REQUEST_LAPS = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
    r".*rendered \d+ headshots in ([0-9.]+) s: fetch ([0-9.]+) s, GPU ([0-9.]+) s"
)


def request_gpu_windows(data_dir: Path, workers: int) -> list[tuple[int, float, float, float]]:
    """(worker index, start, end, seconds) of each request's GPU section after "ready to serve", by start, in
    ``time.time()``'s clock: from the line each request logs when it ends, its laps running fetch, then GPU, then the
    rest, so the section began its total less the fetch before the line. Good to the log's millisecond and the laps'
    hundredths: enough to pick out the GPU samples (every 0.5 s) taken inside a 4 s section."""
    windows = []
    for index, line in _serving_lines(data_dir, workers):
        if found := _REQUEST_LAPS.search(line):
            ended = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            total, fetch, gpu = (float(found[group]) for group in (2, 3, 4))
            start = ended - total + fetch
            windows.append((index, start, start + gpu, gpu))
    return sorted(windows, key=lambda window: window[1])


def _serving_lines(data_dir: Path, workers: int) -> Iterator[tuple[int, str]]:
    """(worker index, line) of each of ``workers`` logs after its "ready to serve": the jobs', not the warm-up's."""
    for index in range(workers):
        text = (data_dir / f"worker-{index}.log").read_text(errors="replace")
        _, ready, serving = text.partition(" ready to serve in ")
        if ready:
            yield from ((index, line) for line in serving.splitlines())


def _summary(seconds: list[float]) -> dict[str, float]:
    return {
        "jobs": len(seconds),
        "median_s": round(statistics.median(seconds), 3),
        "min_s": min(seconds),
        "max_s": max(seconds),
    }


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
