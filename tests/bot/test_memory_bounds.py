"""What the bot keeps in memory per user stays bounded over weeks, and forgets in an order nobody notices."""

from __future__ import annotations

import asyncio

from bot.core.locks import UserLocks
from bot.core.ratelimit import MAX_TRACKED, RateLimiter
from bot.telegram.keyboards import CallbackCommands


async def test_a_user_is_served_one_at_a_time_users_in_parallel_and_no_lock_outlives_them() -> None:
    locks = UserLocks()
    log: list[str] = []
    release = asyncio.Event()

    async def turn(user: str, name: str, wait: bool = False) -> None:
        async with locks.hold(user):
            log.append(f"{name} in")
            if wait:
                await release.wait()
            log.append(f"{name} out")

    first = asyncio.create_task(turn("alice", "alice 1", wait=True))
    second = asyncio.create_task(turn("alice", "alice 2"))
    await asyncio.wait_for(turn("bob", "bob"), 1)  # bob is not held up by alice's long turn
    assert locks.locked("alice") and log == ["alice 1 in", "bob in", "bob out"]
    release.set()
    await asyncio.gather(first, second)
    assert log[3:] == ["alice 1 out", "alice 2 in", "alice 2 out"]  # alice's second turn waited for her first

    await asyncio.gather(*(turn(f"user {index}", "someone") for index in range(1_000)))
    assert len(locks) == 0 and not locks.locked("alice")


def test_the_rate_limiter_forgets_the_least_recently_seen_user_first() -> None:
    limiter = RateLimiter(burst=2, per_second=0.0)  # no refill: a bucket stays empty until it is forgotten
    for user in ("flooding", "quiet"):
        for _ in range(2):
            assert limiter.check(user).allowed
        assert not limiter.check(user).allowed
    assert not limiter.check("flooding").allowed  # "flooding" is now seen more recently than "quiet"
    for index in range(MAX_TRACKED - 1):  # one user more than the limiter keeps
        limiter.check(f"passer-by {index}")
    assert not limiter.check("flooding").allowed  # still remembered, still empty
    assert limiter.check("quiet").allowed  # forgotten: a full bucket, as if new


def test_an_old_long_button_expires_and_a_recent_one_still_works() -> None:
    callbacks = CallbackCommands()
    oldest = callbacks.encode("/headshot " + "a long free-text style, number 0 " * 3)
    for index in range(1, 10_001):
        newest = callbacks.encode("/headshot " + f"a long free-text style, number {index} " * 3)
    assert callbacks.decode(oldest) is None  # past the 10,000 kept: the button answers that it has expired
    assert callbacks.decode(newest) == "/headshot " + "a long free-text style, number 10000 " * 3
