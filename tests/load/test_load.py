"""A small load run in CI: simulated users through the chat core, a real Redis and one real worker process.

The full 500-user run is ``python -m tests.load.run --users 500``; its figures live in BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.load.run import run_load

USERS = 10  # one of them blocks the bot; 20 cost CI 95 s for no path of their own


@pytest.mark.load
async def test_every_user_gets_model_and_headshot_once_while_a_tenth_block_the_bot(
    tmp_path: Path, redis_url: str, model_cache: Path
) -> None:
    result = await run_load(
        USERS, tmp_path, redis_url, timeout_s=240, ramp_s=2.0, model_cache_dir=model_cache, blockers=0.1
    )
    assert result.blockers == USERS // 10
    assert result.lost_users == [] and result.jobs_lost == 0
    assert result.events_delivered_twice == 0
    assert result.unanswered_messages == 0
    assert result.messages == 3 * USERS - result.blockers  # a blocker never asks for headshots
    # Blocked chats never hold up the others' results, free their sessions, and leave nothing pending.
    assert result.blockers_still_held == [] and result.pending_at_end == 0
    assert 0 < result.delivery_delay_max_ms < 10_000
