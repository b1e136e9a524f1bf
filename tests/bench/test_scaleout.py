"""Two real worker processes share one queue: every job runs exactly once and both workers take work."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.scaleout import ScaleoutPlan, run_phase


@pytest.fixture
def plan(selfie_dir: Path) -> ScaleoutPlan:
    selfies = [path.read_bytes() for path in sorted(selfie_dir.glob("*.jpg"))]
    # Small customers on the tiny model: 8 image-steps and 4 headshots in 2 requests, 2 denoising steps.
    return ScaleoutPlan(
        model="tiny", selfies=selfies, train_steps=8, headshots=4, per_request=2, inference_steps=2, timeout_s=240
    )


async def test_two_workers_share_the_queue_without_running_a_job_twice(
    plan: ScaleoutPlan, redis_url: str, tmp_path: Path
) -> None:
    result = await run_phase(plan, workers=2, customers=3, redis_url=redis_url, data_dir=tmp_path)

    assert result.failures == []
    assert result.jobs_expected == 3 * (1 + 2)
    assert result.jobs_completed == result.jobs_expected
    assert result.jobs_lost == []
    assert result.jobs_run_twice == []
    # Both processes took jobs from the one queue, and together they ran each job once.
    assert len(result.jobs_per_worker) == 2
    assert sum(result.jobs_per_worker.values()) == result.jobs_expected
    assert result.customers_per_hour > 0
    # Where the workers' time went: every job timed by its kind, inside the phase's two workers' time.
    assert result.job_seconds["training"]["jobs"] == 3 and result.job_seconds["headshots"]["jobs"] == 3 * 2
    in_jobs = sum(kind["total_s"] for kind in result.job_seconds.values())
    assert 0 < in_jobs <= 2 * result.seconds
    assert result.worker_seconds_per_customer == round(2 * result.seconds / 3, 1)
    assert result.share_between_jobs == round(1 - in_jobs / (2 * result.seconds), 3)
    # Each customer waited from their training's enqueue to their first headshots: at least a training and a request.
    assert len(result.first_headshot_s) == 3
    shortest = result.job_seconds["training"]["min_s"] + result.job_seconds["headshots"]["min_s"]
    assert min(result.first_headshot_s) >= shortest - 0.02  # each figure rounded to 10 ms
    assert max(result.first_headshot_s) <= result.seconds
    # The GPU's share of each job, as the workers logged it: every request's render and every training's steps.
    stages = result.logged_stages
    assert stages["request GPU"]["jobs"] == 3 * 2 and stages["training steps"]["jobs"] == 3
    assert 0 < stages["request GPU"]["min_s"] <= stages["request GPU"]["median_s"] <= stages["request GPU"]["max_s"]
    assert stages["request GPU"]["median_s"] < result.job_seconds["headshots"]["median_s"]  # inside its job
    assert 0 < stages["training steps"]["median_s"] < result.job_seconds["training"]["median_s"]
    assert stages["training steps"]["image_steps_per_s"] > 0
    # Each request's GPU section placed in time, for the clocks inside it (no nvidia-smi here: no samples).
    sections = result.request_clocks
    assert len(sections) == stages["request GPU"]["jobs"] and {section["worker"] for section in sections} == {0, 1}
    assert min(section["gpu_s"] for section in sections) == stages["request GPU"]["min_s"]
    assert all(section["samples"] == 0 for section in sections)
    # Every customer's headshots are on disk, in their own folder.
    outputs = sorted(tmp_path.glob("phase-2w-3c/storage/users/*/outputs/*/*.png"))
    assert len(outputs) == 3 * 4


def test_a_plan_without_selfies_or_with_too_many_jobs_per_worker_is_refused(plan: ScaleoutPlan) -> None:
    with pytest.raises(ValueError, match="at least one selfie"):
        ScaleoutPlan(model="tiny", selfies=[])
    with pytest.raises(ValueError, match=r"jobs_per_worker must be 1 to 4 \(HEADSHOT_WORKER_JOBS\), got 5"):
        ScaleoutPlan(model="tiny", selfies=plan.selfies, jobs_per_worker=5)
    with pytest.raises(ValueError, match="request_lead_s must be 0 or more seconds, got -1"):
        ScaleoutPlan(model="tiny", selfies=plan.selfies, request_lead_s=-1)


def test_the_plan_ranks_requests_as_the_bot_does_unless_told_otherwise(plan: ScaleoutPlan) -> None:
    from jobs.contract.queue import REQUEST_LEAD

    assert plan.request_lead_s == REQUEST_LEAD.total_seconds() == 60


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_worker_process_ends_when_its_driver_is_killed() -> None:
    # A driver that starts its "worker" (a sleeping child) as start_workers does, then is killed from outside.
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from bench.scaleout.workers import die_with_parent\n"
            "sleeper = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
            "child = subprocess.Popen(sleeper, preexec_fn=die_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    child = int(driver.stdout.readline())
    driver.kill()  # SIGKILL: no finally, no handler runs in the driver
    driver.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the worker outlived its driver"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, reaped by init soon, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
