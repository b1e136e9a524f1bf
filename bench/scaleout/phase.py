"""One measured phase: a fresh queue, ``k`` fresh workers, a burst of customers, GPU utilisation sampled meanwhile."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from bench.gpu_sampler import GpuSampler
from bench.scaleout.burst import drive_burst
from bench.scaleout.plan import QUEUE_NAME, PhaseResult, ScaleoutPlan
from bench.scaleout.workers import (
    logged_stages,
    request_gpu_windows,
    start_workers,
    stop_workers,
    wait_until_ready,
)
from jobs.contract.queue import JobQueue, connect_queue
from jobs.storage import LocalStorage

__all__ = ["run_phase"]


async def run_phase(plan: ScaleoutPlan, workers: int, customers: int, redis_url: str, data_dir: Path) -> PhaseResult:
    """One measured burst: ``workers`` fresh worker processes, ``customers`` customers enqueued at once."""
    result = PhaseResult(workers=workers, customers=customers)
    phase_dir = data_dir / f"phase-{workers}w-{customers}c"
    phase_dir.mkdir(parents=True, exist_ok=True)
    pool = await connect_queue(redis_url, QUEUE_NAME)
    await pool.flushdb()  # each phase starts from an empty queue, stream and result set
    processes = start_workers(plan, workers, redis_url, phase_dir)
    try:
        start_up = await wait_until_ready(processes, phase_dir, timeout_s=1800)
        result.model_load_s, result.ready_s = start_up["model_load_s"], start_up["ready_s"]
        sampler = GpuSampler(plan.gpus)
        storage = LocalStorage(phase_dir / "storage")
        with sampler:
            started = time.monotonic()
            await drive_burst(
                JobQueue(pool, QUEUE_NAME, request_lead=timedelta(seconds=plan.request_lead_s)),
                pool,
                storage,
                plan,
                customers,
                result,
            )
            result.seconds = round(time.monotonic() - started, 2)
        result.gpu_utilisation = sampler.mean_utilisation()
        result.gpu_memory_peak_mib = sampler.peak_memory_mib()
        result.gpu_clocks = sampler.clocks()
    finally:
        stop_workers(processes)
        await pool.aclose()
    result.logged_stages = logged_stages(phase_dir, workers)  # the logs are whole once the workers stopped
    result.request_clocks = [
        {"worker": index, "gpu_s": seconds, **sampler.clocks_between(f"gpu{index % max(plan.gpus, 1)}", start, end)}
        for index, start, end, seconds in request_gpu_windows(phase_dir, workers)
    ]
    if result.seconds and not result.jobs_lost:
        result.customers_per_hour = round(customers * 3600 / result.seconds, 2)
        result.worker_seconds_per_customer = round(workers * result.seconds / customers, 1)
        in_jobs = sum(kind["total_s"] for kind in result.job_seconds.values())
        result.share_between_jobs = round(max(0.0, 1 - in_jobs / (workers * result.seconds)), 3)
    return result
