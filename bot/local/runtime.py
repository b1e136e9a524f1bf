"""Everything the local chat and the demo run beside the bot: a private Redis and a worker process.

The worker is a separate process (``python -m jobs.worker.main``), as in production: the bot process never
imports torch. Its log goes to ``<data_dir>/worker.log`` so the terminal stays a chat.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobs.ops.redis_server import embedded_redis
from jobs.settings import Settings

__all__ = ["LocalRuntime", "local_runtime", "settings_environment"]


def settings_environment(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment that gives a child process the same settings (tokens are not passed on)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude={"redis_url", "discord_token", "telegram_token"}).items():
        if value is not None:
            env[f"HEADSHOT_{name.upper()}"] = str(value)
    env["REDIS_URL"] = redis_url
    env.pop("DISCORD_TOKEN", None)
    env.pop("TELEGRAM_TOKEN", None)
    return env


@dataclass
class LocalRuntime:
    redis_url: str
    worker: subprocess.Popen[bytes]
    worker_log: Path


@contextmanager
def local_runtime(settings: Settings) -> Iterator[LocalRuntime]:
    """Start Redis (unless ``REDIS_URL`` is set) and one worker; stop both on exit."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(embedded_redis(settings.redis_url))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.data_dir / "worker.log"
        log_file = stack.enter_context(log_path.open("ab"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobs.worker.main"],
            env=settings_environment(settings, redis_url),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            yield LocalRuntime(redis_url, worker, log_path)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
