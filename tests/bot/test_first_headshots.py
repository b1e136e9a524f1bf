"""The first headshots: the worker's word that a model is trained brings a LinkedIn set unasked, once, where the
setting, today's image quota and the user's open renders allow; otherwise the plain news, as before.

Delivery of a real ``Trained`` event on a real store, Redis queue and local chat (no worker: what is queued is
read back from the queue); the local chat's whole flow renders them (tests/bot/test_flow.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core import texts
from bot.core.delivery import EventDelivery
from bot.core.rendering import queue_render
from bot.core.session import SessionState
from jobs.contract.events import Trained
from jobs.contract.keys import lora_key
from jobs.contract.kinds import JobKind
from jobs.contract.payloads import GenerateRequest, RenderMode
from jobs.settings import Settings
from pipeline.styles import STYLES
from tests.harness import Harness

FIRST_NEWS = texts.TRAINED_FIRST_HEADSHOTS.format(style="LinkedIn profile")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # Three first headshots (not a /headshot's two), so their count is seen to be the setting's; a test's
    # parameters change more.
    return settings.model_copy(update={"first_headshots": 3, **getattr(request, "param", {})})


async def _training_done(harness: Harness, selfie_dir: Path) -> Trained:
    """The user's training queued (never run), and the worker's event that it finished."""
    await harness.say(f"/train {selfie_dir}")
    assert "Training queued" in await harness.say("/train start")
    user = harness.chat.chat.user_key
    training = await harness.app.store.active_job(user)
    assert training is not None and training.kind == JobKind.TRAIN
    return Trained(user_key=user, job_id=training.job_id, lora_key=lora_key(user, training.session_id), event_id="1-0")


async def _deliver(harness: Harness, trained: Trained) -> str:
    """Deliver ``trained`` as the bot's delivery does; return what the chat showed for it."""
    before = len(harness.lines)
    assert await EventDelivery(harness.app.core, {"local": harness.port}).deliver(trained)
    return "\n".join(harness.lines[before:])


async def _renders_queued(harness: Harness) -> list[GenerateRequest]:
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    return [GenerateRequest.from_dict(job.args[0]) for job in queued if job.function == JobKind.GENERATE.function]


async def test_a_trained_model_brings_its_first_headshots_once(harness: Harness, selfie_dir: Path) -> None:
    trained = await _training_done(harness, selfie_dir)
    chat = await _deliver(harness, trained)

    # 1. The news says they come, and their acknowledgement (the message progress edits) follows it.
    assert FIRST_NEWS in chat
    assert chat.index(FIRST_NEWS) < chat.index("Rendering 3 LinkedIn profile headshots")
    [request] = await _renders_queued(harness)
    assert request.style.name == "linkedin" and request.count == 3 and request.mode == RenderMode.PROMPT
    user = harness.chat.chat.user_key
    render = await harness.app.store.active_job(user)
    assert render is not None and render.kind == JobKind.GENERATE and render.progress_message_id is not None
    assert await harness.session_state() == SessionState.GENERATING
    assert "I'm still rendering your linkedin headshots" in await harness.say("/headshot studio")

    # 2. The same event again, from a bot that died before recording it delivered: nothing new is said or queued.
    store = harness.app.store
    await store.forget_deliveries([str(trained.event_id)])
    again = await _deliver(harness, trained)
    assert "Your model is ready" not in again and "Rendering" not in again
    # 3. And from one that died between queueing them and recording that it had, when that render has ended
    # since (here cancelled): still the one render.
    assert "Rendering cancelled" in await harness.say("/cancel")
    await store.forget_deliveries([str(trained.event_id), f"{trained.event_id}/first-headshots"])
    again = await _deliver(harness, trained)
    assert "Your model is ready" not in again and "Rendering" not in again
    assert len(await _renders_queued(harness)) == 1
    assert len(await harness.app.store.session_jobs(user, render.session_id, JobKind.GENERATE)) == 1


@pytest.mark.parametrize("settings", [{"first_headshots": 0}], indirect=True)
async def test_none_when_turned_off(harness: Harness, selfie_dir: Path) -> None:
    chat = await _deliver(harness, await _training_done(harness, selfie_dir))
    assert texts.TRAINED in chat and "Rendering" not in chat
    assert await _renders_queued(harness) == []
    assert await harness.session_state() == SessionState.READY


@pytest.mark.parametrize("settings", [{"daily_images": 2}], indirect=True)  # room for a /headshot's two, not three
async def test_none_when_todays_image_quota_has_no_room(harness: Harness, selfie_dir: Path) -> None:
    chat = await _deliver(harness, await _training_done(harness, selfie_dir))
    assert texts.TRAINED in chat and "Rendering" not in chat and "limit" not in chat
    assert await _renders_queued(harness) == []
    # Nothing lost: the model is the user's, and the quota's room is still theirs to spend.
    assert await harness.session_state() == SessionState.READY
    assert "Rendering 2 LinkedIn profile headshots" in await harness.say("/headshot linkedin")


async def test_none_while_a_preview_still_renders(harness: Harness, selfie_dir: Path) -> None:
    trained = await _training_done(harness, selfie_dir)
    # A preview from the selfies queued with the training (FLUX.2 [klein]), not rendered yet.
    user = harness.chat.chat.user_key
    session = await harness.app.store.current_session(user)
    assert session is not None
    selfie = (await harness.app.store.selfie_keys(user, session.id))[0]
    await queue_render(
        harness.app.core,
        harness.chat.chat,
        session,
        STYLES["linkedin"],
        count=2,
        mode=RenderMode.PREVIEW,
        reference_keys=(selfie,),
    )
    chat = await _deliver(harness, trained)
    assert texts.TRAINED in chat and "Rendering" not in chat
    assert [request.mode for request in await _renders_queued(harness)] == [RenderMode.PREVIEW]
