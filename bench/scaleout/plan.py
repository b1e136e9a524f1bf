"""What a scale-out run measures: one customer's cost and the workers' set-up (the plan), and one phase's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jobs.contract.queue import REQUEST_LEAD

__all__ = ["EVENTS_STREAM", "QUEUE_NAME", "PhaseResult", "ScaleoutPlan"]

QUEUE_NAME = "scaleout:queue"
EVENTS_STREAM = "scaleout:events"


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
    jobs_per_worker: int = 1  # HEADSHOT_WORKER_JOBS of every worker
    request_lead_s: float = REQUEST_LEAD.total_seconds()  # 0: requests in plain enqueue order (the baseline)

    def __post_init__(self) -> None:
        if self.headshots < 1 or self.per_request < 1:
            raise ValueError(f"headshots ({self.headshots}) and per_request ({self.per_request}) must be at least 1.")
        if not 1 <= self.jobs_per_worker <= 4:
            raise ValueError(f"jobs_per_worker must be 1 to 4 (HEADSHOT_WORKER_JOBS), got {self.jobs_per_worker}.")
        if self.request_lead_s < 0:
            raise ValueError(f"request_lead_s must be 0 or more seconds, got {self.request_lead_s}.")
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
    gpu_clocks: dict[str, dict[str, float]] = field(default_factory=dict)  # SM clock, power, temperature (GpuSampler)
    # Where the workers' time went: each job kind's count, median and total seconds (from its "started" event to
    # its last, by the events' stream timestamps: Redis's clock), and the share of the workers' time in no job.
    job_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    worker_seconds_per_customer: float = 0.0  # workers x phase seconds / customers: one GPU each on a GPU host
    share_between_jobs: float = 0.0
    # Each customer's wait from ``/train start`` (their training enqueued) to their first headshots ready to send, in
    # the order they were enqueued: the first one's, in a one-customer phase, is the warm worker's figure.
    first_headshot_s: list[float] = field(default_factory=list)
    # Stages the workers' logs time inside the jobs (``workers.logged_stages``): each request's GPU section and each
    # training's optimizer steps, so runs compare the GPU's work without reading the logs by hand.
    logged_stages: dict[str, dict[str, float]] = field(default_factory=dict)
    # Each request's GPU section in start order (worker, seconds) with the clocks its GPU's samples show inside it
    # (``GpuSampler.clocks_between``): whether the first request after a training runs at a lower clock.
    request_clocks: list[dict[str, float]] = field(default_factory=list)
