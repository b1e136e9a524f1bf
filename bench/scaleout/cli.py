"""The command line of ``python -m bench.scaleout``: phases from ``--workers`` and ``--customers``, each run in turn,
the figures printed and written after each, exit status 1 if any job was lost, ran twice or failed."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.gpu_sampler import GpuSampler
from bench.scaleout.phase import run_phase
from bench.scaleout.plan import PhaseResult, ScaleoutPlan
from jobs.contract.queue import REQUEST_LEAD
from jobs.ops.redis_server import embedded_redis

__all__ = ["main"]

DESCRIPTION = "Customers per hour with 1, 2, ... worker processes sharing one queue."
SELFIE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


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
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=DESCRIPTION)
    parser.add_argument("--model", default="tiny", help="'random-sdxl' (SDXL shapes, random weights), 'tiny', a folder")
    parser.add_argument("--selfies", type=Path, required=True, help="folder of selfie photos every customer sends")
    parser.add_argument("--workers", type=_pairs, default=[1, 2], help="worker count per phase, e.g. 1,2")
    parser.add_argument("--customers", type=_pairs, default=[2, 4], help="customers per phase, e.g. 2,4")
    parser.add_argument("--train-steps", type=int, default=1000, help="image-steps of one customer's training")
    parser.add_argument("--headshots", type=int, default=40, help="headshots per customer")
    parser.add_argument("--per-request", type=int, default=4, help="headshots per /headshot request (one job each)")
    parser.add_argument("--inference-steps", type=int, default=None, help="override the style's denoising steps")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to pin workers to (default: all visible)")
    parser.add_argument(
        "--jobs-per-worker", type=int, default=1, help="jobs each worker runs at once (HEADSHOT_WORKER_JOBS, 1-4)"
    )
    parser.add_argument(
        "--request-lead-s",
        type=float,
        default=REQUEST_LEAD.total_seconds(),
        help="seconds a request is ranked ahead of trainings (the bot's REQUEST_LEAD; 0: plain enqueue order)",
    )
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
        jobs_per_worker=args.jobs_per_worker,
        request_lead_s=args.request_lead_s,
    )
    # SIGTERM (``timeout``, a job scheduler) ends the run as Ctrl-C does: each phase's ``finally`` stops its workers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(_run(args, plan))
    healthy = all(r.jobs_completed == r.jobs_expected and not r.jobs_run_twice and not r.failures for r in results)
    for r in results:
        print(
            f"{r.workers} worker(s): {r.customers} customers in {r.seconds:.0f} s "
            f"= {r.customers_per_hour} customers/h; "
            f"jobs {r.jobs_completed}/{r.jobs_expected}, run twice {len(r.jobs_run_twice)}, lost {len(r.jobs_lost)}, "
            f"GPU util {r.gpu_utilisation}, clocks {r.gpu_clocks}; "
            f"{r.worker_seconds_per_customer} worker-s per customer, jobs "
            f"{r.job_seconds}, {r.share_between_jobs:.1%} of the workers' time between jobs; "
            f"first headshots after /train start: {r.first_headshot_s} s; inside the jobs, logged: {r.logged_stages}"
        )
    return 0 if healthy else 1
