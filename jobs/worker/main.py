"""``headshot-worker``: run one GPU worker against ``REDIS_URL`` until stopped (SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import sys

from jobs.logging_setup import configure_logging
from jobs.settings import Settings
from jobs.worker.app import build_worker

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headshot-worker", description=__doc__)
    parser.add_argument("--model", help="override HEADSHOT_MODEL (hub id, local folder, 'tiny' or 'tiny-flux2')")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty (for scripts and CI)")
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings)  # HEADSHOT_LOG_FORMAT=json for one JSON object per line
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    if not settings.redis_url:
        print(
            "headshot-worker needs a Redis shared with the bot: set REDIS_URL (e.g. redis://localhost:6379/0).",
            file=sys.stderr,
        )
        return 2
    worker = build_worker(settings, settings.redis_url, burst=args.burst)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
