"""``python -m bench.scaleout``: customers per hour with 1, 2, ... worker processes sharing one queue.

Each phase starts a fresh queue and ``k`` real ``headshot-worker`` processes (worker ``i`` pinned to GPU ``i`` with
``CUDA_VISIBLE_DEVICES`` when GPUs are present), waits until every worker has loaded its model, then enqueues a
burst of simulated customers at once: one training job each and, as each customer's ``trained`` event arrives, the
generation jobs for their headshots, exactly as the bot would. It reads the workers' event stream and arq's results
to prove that every job ran once and none was lost, samples ``nvidia-smi`` for per-GPU utilisation, and prints (and
writes) the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arq.jobs import Job
from redis.asyncio import Redis

from bench.gpu_sampler import GpuSampler
from jobs.contract.events import Cancelled, Failed, ImagesReady, Started, Trained, event_from_fields
from jobs.contract.keys import lora_key, output_prefix, selfie_key
from jobs.contract.payloads import GenerateRequest, TrainRequest, generate_job_id, train_job_id
from jobs.contract.queue import JobQueue, connect_queue
from jobs.ops.redis_server import embedded_redis
from jobs.storage import LocalStorage
from pipeline.styles import resolve_style

__all__ = ["PhaseResult", "ScaleoutPlan", "main", "run_phase"]

QUEUE_NAME = "scaleout:queue"
EVENTS_STREAM = "scaleout:events"
SELFIE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class ScaleoutPlan:
    """What one customer costs and how the workers run; the same for every phase of a run."""

    model: str
    selfies: list[bytes]
    train_steps: int = 1000
    headshots: int = 40
    per_request: int = 4
    inference_steps: int | None = None
    style: str = "linkedin"
    gpus: int = 0  # 0: CPU workers, no pinning
    timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.headshots < 1 or self.per_request < 1:
            raise ValueError(f"headshots ({self.headshots}) and per_request ({self.per_request}) must be at least 1.")
        if not self.selfies:
            raise ValueError("A scale-out run needs at least one selfie image.")

    @property
    def requests_per_customer(self) -> int:
        return math.ceil(self.headshots / self.per_request)


@dataclass
class PhaseResult:
    workers: int
    customers: int
    seconds: float = 0.0
    customers_per_hour: float = 0.0
    jobs_expected: int = 0
    jobs_completed: int = 0
    jobs_lost: list[str] = field(default_factory=list)
    jobs_run_twice: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    jobs_per_worker: dict[str, int] = field(default_factory=dict)
    model_load_s: list[float] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)  # the whole start-up: load, slots, compiling
    gpu_utilisation: dict[str, float] = field(default_factory=dict)
    gpu_memory_peak_mib: dict[str, float] = field(default_factory=dict)


def _worker_env(plan: ScaleoutPlan, index: int, workers: int, redis_url: str, data_dir: Path) -> dict[str, str]:
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


def _start_workers(plan: ScaleoutPlan, workers: int, redis_url: str, data_dir: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(workers):
        log_file = (data_dir / f"worker-{index}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "jobs.worker.main"],
                env=_worker_env(plan, index, workers, redis_url, data_dir),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )
    return processes


async def _wait_until_ready(
    processes: list[subprocess.Popen[bytes]], data_dir: Path, timeout_s: float
) -> dict[str, list[float]]:
    """Wait until every worker has finished starting up (compiling included, so no burst pays for a compile); return
    each one's model-load and whole start-up seconds, read from its log. A worker that exits fails the phase."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        figures: dict[str, list[float]] = {"model_load_s": [], "ready_s": []}
        for index, process in enumerate(processes):
            log_text = (data_dir / f"worker-{index}.log").read_text(errors="replace")
            if process.poll() is not None:
                tail = log_text[-3000:]
                raise RuntimeError(f"worker {index} exited with {process.returncode} while starting:\n{tail}")
            for key, marker in (("model_load_s", " loaded in "), ("ready_s", " ready to serve in ")):
                found = [line for line in log_text.splitlines() if marker in line]
                if found:
                    figures[key].append(float(found[0].rsplit(marker, 1)[1].split()[0]))
        if len(figures["ready_s"]) == len(processes):
            return figures
        await asyncio.sleep(0.5)
    raise TimeoutError(f"workers were not ready within {timeout_s:.0f} s; see {data_dir}/worker-*.log")


def _stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _store_selfies(storage: LocalStorage, plan: ScaleoutPlan, user_key: str) -> list[str]:
    keys = []
    for number, image in enumerate(plan.selfies, start=1):
        key = selfie_key(user_key, 1, number)
        await storage.put(key, image)
        keys.append(key)
    return keys


async def _drive_burst(
    queue: JobQueue, redis: Redis, storage: LocalStorage, plan: ScaleoutPlan, customers: int, result: PhaseResult
) -> None:
    """Enqueue every customer's training at once; enqueue their headshots when trained; wait for all images."""
    users = [f"scaleout:customer-{number:03d}" for number in range(1, customers + 1)]
    expected: set[str] = set()
    for number, user in enumerate(users):
        request = TrainRequest(user, 1, await _store_selfies(storage, plan, user), lora_key(user, 1), seed=number)
        job_id = train_job_id(user, 1, 1)
        await queue.enqueue_training(job_id, request)
        expected.add(job_id)
    result.jobs_expected = customers * (1 + plan.requests_per_customer)

    started: Counter[str] = Counter()
    finished: set[str] = set()
    last_id = "0"
    deadline = time.monotonic() + plan.timeout_s
    while len(finished) < result.jobs_expected and not result.failures and time.monotonic() < deadline:
        reply = await redis.xread({EVENTS_STREAM: last_id}, block=1000, count=100)
        for _stream, entries in reply or []:
            for raw_id, fields in entries:
                last_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                event = event_from_fields(last_id, {_text(k): _text(v) for k, v in fields.items()})
                if isinstance(event, Started):
                    started[event.job_id] += 1
                    result.jobs_per_worker[event.worker] = result.jobs_per_worker.get(event.worker, 0) + 1
                elif isinstance(event, Trained):
                    finished.add(event.job_id)
                    expected |= await _enqueue_headshots(queue, plan, event.user_key)
                elif isinstance(event, ImagesReady):
                    finished.add(event.job_id)
                elif isinstance(event, Failed | Cancelled):
                    reason = event.reason if isinstance(event, Failed) else ""
                    result.failures.append(f"{event.job_id}: {event.type.value} {reason}")
    result.jobs_completed = len(finished)
    result.jobs_run_twice = sorted(job for job, count in started.items() if count > 1)
    # arq's own record agrees: a job whose result says try 2 ran twice, even if its first run published nothing.
    for job_id in sorted(finished):
        info = await Job(job_id, queue.pool, _queue_name=QUEUE_NAME).result_info()
        if info is not None and info.job_try > 1 and job_id not in result.jobs_run_twice:
            result.jobs_run_twice.append(job_id)
    result.jobs_lost = sorted(expected - finished) + ["(never enqueued)"] * (result.jobs_expected - len(expected))


async def _enqueue_headshots(queue: JobQueue, plan: ScaleoutPlan, user: str) -> set[str]:
    job_ids = set()
    for number in range(plan.requests_per_customer):
        count = min(plan.per_request, plan.headshots - number * plan.per_request)
        request_id = f"1-{number + 1}"
        prefix = output_prefix(user, request_id)
        style = resolve_style(plan.style)
        request = GenerateRequest(user, request_id, lora_key(user, 1), style, count, 1000 * number, prefix)
        job_id = generate_job_id(user, request_id)
        await queue.enqueue_generation(job_id, request)
        job_ids.add(job_id)
    return job_ids


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_phase(plan: ScaleoutPlan, workers: int, customers: int, redis_url: str, data_dir: Path) -> PhaseResult:
    """One measured burst: ``workers`` fresh worker processes, ``customers`` customers enqueued at once."""
    result = PhaseResult(workers=workers, customers=customers)
    phase_dir = data_dir / f"phase-{workers}w-{customers}c"
    phase_dir.mkdir(parents=True, exist_ok=True)
    pool = await connect_queue(redis_url, QUEUE_NAME)
    await pool.flushdb()  # each phase starts from an empty queue, stream and result set
    processes = _start_workers(plan, workers, redis_url, phase_dir)
    try:
        start_up = await _wait_until_ready(processes, phase_dir, timeout_s=1800)
        result.model_load_s, result.ready_s = start_up["model_load_s"], start_up["ready_s"]
        sampler = GpuSampler(plan.gpus)
        storage = LocalStorage(phase_dir / "storage")
        with sampler:
            started = time.monotonic()
            await _drive_burst(JobQueue(pool, QUEUE_NAME), pool, storage, plan, customers, result)
            result.seconds = round(time.monotonic() - started, 2)
        result.gpu_utilisation = sampler.mean_utilisation()
        result.gpu_memory_peak_mib = sampler.peak_memory_mib()
    finally:
        _stop_workers(processes)
        await pool.aclose()
    if result.seconds and not result.jobs_lost:
        result.customers_per_hour = round(customers * 3600 / result.seconds, 2)
    return result


def _read_selfies(folder: Path) -> list[bytes]:
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in SELFIE_SUFFIXES)
    if not files:
        raise SystemExit(f"No selfies (.jpg, .png, .webp) in {folder}: pass --selfies with a folder of photos.")
    return [path.read_bytes() for path in files]


def _pairs(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts like 1,2 but got {text!r}") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"counts must be at least 1, got {text!r}")
    return values


async def _run(args: argparse.Namespace, plan: ScaleoutPlan) -> list[PhaseResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="scaleout-") as scratch, embedded_redis(os.environ.get("REDIS_URL")) as url:
        work_dir = args.work_dir or Path(scratch)
        for workers, customers in zip(args.workers, args.customers, strict=True):
            print(f"phase: {workers} worker(s), {customers} customer(s) ...", flush=True)
            result = await run_phase(plan, workers, customers, url, work_dir)
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
            if args.out:  # rewritten after each phase, so a run cut short still leaves its finished phases
                report = {"plan": _describe(plan), "phases": [asdict(r) for r in results]}
                args.out.write_text(json.dumps(report, indent=2))
    return results


def _describe(plan: ScaleoutPlan) -> dict[str, Any]:
    described = asdict(plan)
    described["selfies"] = len(plan.selfies)
    return described


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="'random-sdxl' (SDXL shapes, random weights), 'tiny', a folder")
    parser.add_argument("--selfies", type=Path, required=True, help="folder of selfie photos every customer sends")
    parser.add_argument("--workers", type=_pairs, default=[1, 2], help="worker count per phase, e.g. 1,2")
    parser.add_argument("--customers", type=_pairs, default=[2, 4], help="customers per phase, e.g. 2,4")
    parser.add_argument("--train-steps", type=int, default=1000, help="image-steps of one customer's training")
    parser.add_argument("--headshots", type=int, default=40, help="headshots per customer")
    parser.add_argument("--per-request", type=int, default=4, help="headshots per /headshot request (one job each)")
    parser.add_argument("--inference-steps", type=int, default=None, help="override the style's denoising steps")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to pin workers to (default: all visible)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one phase may take")
    parser.add_argument("--work-dir", type=Path, help="keep worker logs, models and outputs here (default: temporary)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here (rewritten after each phase)")
    args = parser.parse_args(argv)
    if len(args.workers) != len(args.customers):
        parser.error(f"--workers {args.workers} and --customers {args.customers} need the same number of phases")
    gpus = GpuSampler.count_gpus() if args.gpus is None else args.gpus
    plan = ScaleoutPlan(
        model=args.model,
        selfies=_read_selfies(args.selfies),
        train_steps=args.train_steps,
        headshots=args.headshots,
        per_request=args.per_request,
        inference_steps=args.inference_steps,
        gpus=gpus,
        timeout_s=args.timeout,
    )
    results = asyncio.run(_run(args, plan))
    healthy = all(r.jobs_completed == r.jobs_expected and not r.jobs_run_twice and not r.failures for r in results)
    for r in results:
        print(
            f"{r.workers} worker(s): {r.customers} customers in {r.seconds:.0f} s "
            f"= {r.customers_per_hour} customers/h; "
            f"jobs {r.jobs_completed}/{r.jobs_expected}, run twice {len(r.jobs_run_twice)}, lost {len(r.jobs_lost)}, "
            f"GPU util {r.gpu_utilisation}"
        )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
