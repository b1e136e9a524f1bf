"""Who the user is: chosen at /train (buttons or words), kept with the session, shown in /status, carried to the
worker in the training and rendering requests, and changeable only with /train new once a model is trained."""

from __future__ import annotations

from pathlib import Path

from jobs.contract.keys import lora_key, output_prefix, selfie_key
from jobs.contract.payloads import GenerateRequest, TrainRequest
from pipeline.styles import STYLES
from pipeline.subject import Subject
from tests.bot.flows import seed_ready
from tests.harness import Harness


async def test_words_and_buttons_describe_the_user_all_the_way_to_the_training_job(
    harness: Harness, selfie_dir: Path
) -> None:
    first = await harness.say("/train")
    assert "How should the pictures describe you?" in first
    assert "[Woman] -> type: /train woman" in first and "[Person] -> type: /train person" in first
    assert "as a woman." in await harness.say("/train woman")
    answer = await harness.say("/train 30s glasses")
    assert "I'll describe you as a woman in her thirties wearing glasses." in answer
    assert "[No glasses] -> type: /train no-glasses" in answer
    assert "Described as: a woman in her thirties wearing glasses." in await harness.say("/status")

    await harness.say(f"/train {selfie_dir}")
    assert "Training queued" in await harness.say("/train start")
    refused = await harness.say("/train man")
    assert "Your model is training as a woman in her thirties wearing glasses; send /cancel first" in refused
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    request = TrainRequest.from_dict(queued[0].args[0])
    assert request.subject == Subject("woman", "30s", True)
    assert request.subject.caption == "a photo of sks woman in her thirties wearing glasses"
    assert request.subject.class_prompt == "a photo of a woman"


async def test_a_word_that_describes_nobody_is_refused_by_name(harness: Harness) -> None:
    await harness.say("/train")
    answer = await harness.say("/train woman wizard")
    assert "'wizard' doesn't describe you to me" in answer and "/train woman 30s glasses" in answer
    assert "Described as: a person." in await harness.say("/status")  # nothing of the line was taken


async def test_a_trained_model_keeps_its_subject_until_train_new(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)
    refused = await harness.say("/train man 40s")
    assert "Your model was trained as a person. To change that, train a new one: /train new man 40s" in refused
    assert "Described as: a person." in await harness.say("/status")

    assert "I'll describe you as a man in his forties." in await harness.say("/train new man 40s")
    assert "Described as: a man in his forties." in await harness.say("/status")
    # /train new again, without words, keeps the description the user gave last.
    await harness.say("/train new")
    session = await harness.app.store.current_session(harness.chat.chat.user_key)
    assert session is not None and session.subject == Subject("man", "40s")


async def test_the_render_request_names_the_sessions_subject(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)
    user = harness.chat.chat.user_key
    session = await harness.app.store.current_session(user)
    assert session is not None
    # As if chosen before training: the store keeps the subject with the session.
    await harness.app.store.update_session(user, session.id, subject=Subject("woman", "60s"))
    assert "Rendering" in await harness.say("/headshot linkedin")
    queued = await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name)
    request = GenerateRequest.from_dict(queued[0].args[0])
    assert request.style.render_prompt(request.subject.phrase()).startswith(
        "professional linkedin headshot photo of sks woman in her sixties, friendly smile"
    )


def test_requests_from_before_subjects_describe_a_person() -> None:
    train = TrainRequest("local:a", 1, [selfie_key("local:a", 1, 1)], lora_key("local:a", 1)).to_dict()
    del train["subject"]
    assert TrainRequest.from_dict(train).subject == Subject()
    lora, out = lora_key("local:a", 1), output_prefix("local:a", "1-1")
    render = GenerateRequest("local:a", "1-1", lora, STYLES["studio"], 2, 7, out).to_dict()
    del render["subject"]
    assert GenerateRequest.from_dict(render).subject == Subject()
    # And a subject survives the trip as a dict (arq's msgpack/JSON hand back plain values).
    render = GenerateRequest("local:a", "1-1", lora, STYLES["studio"], 2, 7, out, Subject("man", None, True))
    assert GenerateRequest.from_dict(render.to_dict()).subject == Subject("man", None, True)
