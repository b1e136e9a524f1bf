"""``python -m bench.worker_ready``: how long a worker takes from start to "ready to serve", as the settings ask.

Run it after a worker (or ``bench.benchmark_request``) has started once on the machine with the same
``HEADSHOT_COMPILE_CACHE_DIR`` to time a restart that finds its compiled kernels kept; on a fresh folder it times a
cold start. Prints (and with ``--out`` writes) the seconds and the settings that decided them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.benchmark_request import describe_settings, worker_settings
from bench.measure import measured

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_ready", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sdxl", "tiny"), default="sdxl")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from jobs.worker.model_setup import prepare_model
    from pipeline.diffusion.loading import pick_device

    device = pick_device()
    settings = worker_settings("random-sdxl" if args.model == "sdxl" else "tiny", Path(tempfile.mkdtemp()))
    cache = settings.resolved_compile_cache_dir
    cached_files = sum(1 for path in cache.rglob("*") if path.is_file()) if cache.is_dir() else 0
    with measured(device) as ready:
        prepare_model(settings)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "worker": describe_settings(settings, device),
        "compile_cache_dir": str(cache),
        "cached_files_at_start": cached_files,
        "worker_ready_s": round(ready.seconds, 1),
    }
    print(json.dumps(results, default=str), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
