"""``python -m bench.worker_ready``: how long a worker takes from start to "ready to serve", as the settings ask.

``--starts N`` starts the worker N times, each in a fresh process with the same ``HEADSHOT_COMPILE_CACHE_DIR`` (a
new folder unless the environment names one): the first start on an empty folder times a cold start, the later ones
a restart that finds its compiled kernels kept; with ``--hosts`` each start has an empty folder of its own, as on a
new host (``TORCHINDUCTOR_CACHE_DIR`` and ``TRITON_CACHE_DIR`` dropped from its environment), and the starts share
their kernels and FP8 scales through one storage folder (``HEADSHOT_SHARE_COMPILED``, as workers on S3 do). Without
``--starts``, one start in this process, on whatever the folder holds. Prints (and with ``--out`` writes) the
seconds and the settings that decided them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.benchmark_request import describe_settings, worker_settings
from bench.measure import add_cudnn_autotune_switch, measured, use_cudnn_autotune

__all__ = ["HOST_KEPT_FOLDERS", "PHASES", "main", "one_start", "start_phases"]

# Environment variables naming folders where compiled kernels outlive a process: a new host has none of them.
HOST_KEPT_FOLDERS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")

# A start's phases, as ``jobs.worker.model_setup`` and ``pipeline.diffusion.serving`` log them: name -> the seconds'
# pattern. The phases overlap where a process works beside the start (the decoder's), so they need not add up.
PHASES = {
    "model": re.compile(r"\bloaded in ([0-9.]+) s"),
    "fp8 scales": re.compile(r"^FP8 input scales .* in ([0-9.]+) s"),
    "training": re.compile(r"^training step compiled in ([0-9.]+) s"),
    "first look's denoiser": re.compile(r"^warmed denoiser before the VAE decoder, .* in ([0-9.]+) s"),
    "decoder process": re.compile(r"^VAE decoder compiled beside the start: .* ready ([0-9.]+) s after it began"),
    "decoder wait and load": re.compile(r"^warmed VAE decoder in ([0-9.]+) s"),
    "rendering": re.compile(r"^denoiser and VAE decoder compiled for every style and batch size in ([0-9.]+) s"),
    "ready": re.compile(r"^ready to serve in ([0-9.]+) s"),
    "taking jobs": re.compile(r"^taking jobs ([0-9.]+) s after the worker's start began"),
}


def start_phases(messages: list[str]) -> dict[str, float]:
    """The seconds of each of ``PHASES`` that ``messages`` (a start's log, in order) name, the first of each."""
    phases: dict[str, float] = {}
    for message in messages:
        for name, pattern in PHASES.items():
            if name not in phases and (found := pattern.search(message)):
                phases[name] = float(found[1])
    return phases


class _Messages(logging.Handler):
    """Keeps every record's message: the start's phases are read from them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def one_start(model: str) -> dict[str, Any]:
    """Set a worker up in this process (``prepare_model``, between loading and publishing what workers share, as a
    worker's start does) and time it."""
    import asyncio

    from pipeline.diffusion.loading import pick_device

    device = pick_device()
    settings = worker_settings("random-sdxl" if model == "sdxl" else "tiny", Path(tempfile.mkdtemp()))
    cache = settings.resolved_compile_cache_dir
    cached_files = sum(1 for path in cache.rglob("*") if path.is_file()) if cache.is_dir() else 0
    log = _Messages()
    logging.getLogger().addHandler(log)
    try:
        with measured(device) as ready:
            asyncio.run(_start(settings))
    finally:
        logging.getLogger().removeHandler(log)
    return {
        "worker": describe_settings(settings, device),
        "compile_cache_dir": str(cache),
        "kernels_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),  # where inductor kept them (use_compile_cache)
        "cached_files_at_start": cached_files,
        "worker_ready_s": round(ready.seconds, 1),
        "phases_s": start_phases(log.messages),
    }


async def _start(settings: Any) -> None:
    from jobs.storage import open_storage
    from jobs.worker.compile_share import prepare_model_sharing

    storage = await open_storage(settings)
    try:
        await prepare_model_sharing(storage, settings)
    finally:
        await storage.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_ready", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument(
        "--starts", type=int, default=0, help="start N times, each in a fresh process (cold, then kept)"
    )
    parser.add_argument(
        "--hosts", action="store_true", help="each start on an empty compile folder, sharing through one storage folder"
    )
    parser.add_argument("--out", type=Path)
    add_cudnn_autotune_switch(parser)
    args = parser.parse_args(argv)
    use_cudnn_autotune(args)
    # The worker's own start-up log (each warm-up render's seconds) on stderr, as a worker prints it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    if args.starts < 1:
        results |= one_start(args.model)
    else:
        environment = dict(os.environ)
        environment.setdefault("HEADSHOT_COMPILE_CACHE_DIR", tempfile.mkdtemp(prefix="compile-cache-"))
        if args.hosts:
            environment |= {"HEADSHOT_SHARE_COMPILED": "true", "HEADSHOT_STORAGE_DIR": tempfile.mkdtemp(prefix="pool-")}
            # A kernels folder named here wins over HEADSHOT_COMPILE_CACHE_DIR (use_compile_cache), so every "new
            # host" would find the previous start's kernels in it: the 2026-12-03 seventh session's run did.
            for name in HOST_KEPT_FOLDERS:
                environment.pop(name, None)
        starts = []
        for _ in range(args.starts):
            if args.hosts:  # a new host: nothing compiled kept
                environment["HEADSHOT_COMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile-cache-")
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.worker_ready",
                    "--model",
                    args.model,
                    "--cudnn-autotune",
                    args.cudnn_autotune,
                ],
                env=environment,
                stdout=subprocess.PIPE,  # the start's JSON; its log goes on to this process's stderr
                text=True,
                check=True,
            )
            starts.append(json.loads(done.stdout.strip().splitlines()[-1]))
        results["starts"] = starts
        results["worker_ready_s"] = [start["worker_ready_s"] for start in starts]
    print(json.dumps(results, default=str), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
