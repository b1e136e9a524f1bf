"""Real worker processes for fault tests: ``python -m jobs.worker.main`` as production runs it, killed at will."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.settings import Settings


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process the same settings as the test's bot."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEADSHOT_")}
    for name, value in settings.model_dump().items():
        if value is None or name.endswith("_token"):
            continue
        env[f"HEADSHOT_{name.upper()}"] = str(value)
    env["REDIS_URL"] = str(settings.redis_url)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """One ``headshot-worker`` child; its log goes to ``log_path`` so a failing test can show it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout_s: float = 120) -> None:
        """Start the process and wait until it has loaded the model (its log says so)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs.worker.main"],
            env=worker_env(self.settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if " loaded in " in self.log_path.read_text(errors="replace")[offset:]:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker did not load the model in {timeout_s} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is cleaned up, as when the OOM killer or a lost host takes it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
