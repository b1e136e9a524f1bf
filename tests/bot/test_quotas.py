"""Daily quotas: the next training or render past the operator's limit is refused with the limit and when it resets,
/status shows what is left, and the next UTC day starts afresh."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.core.quotas import Quotas
from jobs.settings import Settings
from tests.bot.flows import seed_ready
from tests.harness import Harness

DAY_S = 24 * 3600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Two headshots a request (the shared settings), so three a day is one render and a refusal.
    return settings.model_copy(update={"daily_trainings": 1, "daily_images": 3})


async def test_a_second_training_in_a_day_is_refused_until_midnight(harness: Harness, selfie_dir: Path) -> None:
    await harness.say(f"/train {selfie_dir}")
    assert "Training queued" in await harness.say("/train start")
    assert "Training cancelled" in await harness.say("/cancel")  # the GPU was taken: it counts

    refused = await harness.say("/train start")
    assert "You've reached today's limit of 1 training(s) per user" in refused
    assert "resets at midnight UTC, in " in refused
    status = await harness.say("/status")
    assert "Today: 0 of 1 trainings left." in status and "Quotas reset at midnight UTC" in status

    harness.app.core.clock = lambda: time.time() + DAY_S  # tomorrow
    assert "Training queued" in await harness.say("/train start")


async def test_a_render_past_the_daily_headshots_is_refused_until_midnight(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)  # two headshots posted today
    assert "Today: 1 of 3 headshots left." in await harness.say("/status")

    refused = await harness.say("/headshot linkedin")
    assert "That would pass today's limit of 3 headshots: 1 left, and a /headshot renders 2." in refused
    assert await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name) == []  # nothing recorded

    harness.app.core.clock = lambda: time.time() + DAY_S
    assert "Rendering 2 LinkedIn profile headshots" in await harness.say("/headshot linkedin")
    assert "Today: 3 of 3 headshots left." in await harness.say("/status")


async def test_delete_erases_everything_but_todays_counts(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)  # two headshots today
    await harness.say("/delete")
    assert "are erased" in await harness.say("/delete confirm")
    # Nothing of the user is left but today's numbers: erasing is no way around the quotas.
    assert "Today: 1 of 3 headshots left." in await harness.say("/status")
    await harness.say(f"/train {selfie_dir}")
    assert "Training queued" in await harness.say("/train start")
    await harness.say("/cancel")
    await harness.say("/delete")
    await harness.say("/delete confirm")
    await harness.say(f"/train {selfie_dir}")
    assert "You've reached today's limit of 1 training(s) per user" in await harness.say("/train start")
    # The next day the carried counts no longer count, and the rows go once anyone's /delete writes.
    harness.app.core.clock = lambda: time.time() + DAY_S
    assert "Training queued" in await harness.say("/train start")
    await harness.app.core.quotas.carry_over("local:someone-else")
    assert await harness.app.store._all("SELECT * FROM usage_carried") == []


async def test_zero_means_no_quota(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)
    unlimited = Quotas(
        harness.settings.model_copy(update={"daily_trainings": 0, "daily_images": 0}), harness.app.store, time.time
    )
    await unlimited.check_images(harness.chat.chat.user_key, 10_000)
    await unlimited.check_training(harness.chat.chat.user_key)
    assert (await unlimited.usage(harness.chat.chat.user_key)).lines() == []  # /status shows no quota lines
