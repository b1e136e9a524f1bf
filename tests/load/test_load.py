"""A small load run in CI: simulated users through the chat core, a real Redis and one real worker process.

The full 500-user run is ``python -m tests.load.run --users 500``; its figures live in BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.load.run import run_load

USERS = 20


@pytest.mark.load
async def test_every_user_gets_model_and_headshot_once(tmp_path: Path, redis_url: str, model_cache: Path) -> None:
    result = await run_load(USERS, tmp_path, redis_url, timeout_s=240, ramp_s=2.0, model_cache_dir=model_cache)
    assert result.lost_users == [] and result.jobs_lost == 0
    assert result.events_delivered_twice == 0
    assert result.unanswered_messages == 0
    assert result.messages == 3 * USERS
