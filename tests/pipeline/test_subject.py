"""Who the user is reaches the training caption, the class prompt and every style prompt, within CLIP's 77 tokens."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from jobs.contract.keys import lora_key, selfie_key
from jobs.contract.payloads import TrainRequest
from jobs.settings import Settings
from jobs.worker.train_job import training_config
from jobs.worker.training_setup import training_plan
from pipeline.diffusion.generation import generate_headshots
from pipeline.styles import STYLES
from pipeline.subject import AGES, KINDS, Subject, UnknownSubjectWord, parse_subject_words
from tests.pipeline.conftest import RENDER_STEPS
from tests.pipeline.test_generation import difference

EVERY_SUBJECT = [Subject(kind, age, glasses) for kind, age, glasses in itertools.product(KINDS, [None, *AGES], (0, 1))]


def test_every_preset_with_the_longest_subject_fits_clips_77_tokens(pipe: Any) -> None:
    """The tiny model's tokenizer has CLIP's byte-level BPE with whole-word merges for the prompts' words (as the real
    vocabulary has them), so a count here is the count on SDXL; a word it lacks would cost a token per letter."""

    def tokens(text: str) -> int:
        return len(pipe.tokenizer(text, truncation=False).input_ids)

    longest = max(EVERY_SUBJECT, key=lambda subject: tokens(subject.phrase()))
    assert longest.age is not None and longest.glasses
    assert tokens(longest.phrase()) == 2 + 7  # start and end tokens, then one token a word ("sks woman in her ...")
    for style in STYLES.values():
        for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
            count = len(tokenizer(style.render_prompt(longest.phrase()), truncation=False).input_ids)
            assert count <= tokenizer.model_max_length == 77, f"{style.name}: {count} tokens"
    assert tokens(longest.caption) <= 77


def test_the_subject_is_the_caption_and_the_class_prompt_of_training(pipe: Any) -> None:
    request = TrainRequest(
        "local:a", 1, [selfie_key("local:a", 1, 1)], lora_key("local:a", 1), subject=Subject("woman", "30s", True)
    )
    settings = Settings(_env_file=None, model="tiny", train_steps=8)  # type: ignore[call-arg]
    config = training_config(request, settings, training_plan(pipe, settings))
    assert config.prompt == "a photo of sks woman in her thirties wearing glasses"
    assert config.class_prompt == "a photo of a woman"
    # A request from before subjects trains exactly as before.
    before_subjects = TrainRequest("local:a", 1, [selfie_key("local:a", 1, 1)], lora_key("local:a", 1))
    old = training_config(before_subjects, settings, training_plan(pipe, settings))
    assert (old.prompt, old.class_prompt) == ("a photo of sks person", "a photo of a person")


def test_the_subject_reaches_the_rendered_prompt(pipe: Any) -> None:
    def one(subject: Subject | None) -> Any:
        style = STYLES["studio"]
        return generate_headshots(pipe, style, count=1, seed=5, steps=RENDER_STEPS, subject=subject)[0].image

    person = one(None)
    assert difference(person, one(Subject())) == 0  # the default subject is the prompt as it always was
    assert difference(person, one(Subject("woman", "60s", True))) > 1


def test_words_change_only_what_they_name_and_unknown_ones_are_named() -> None:
    subject = parse_subject_words("woman thirties glasses", Subject())
    assert subject == Subject("woman", "30s", True)
    assert parse_subject_words("no-glasses any-age", subject) == Subject("woman")
    assert Subject.from_words(subject.words()) == subject
    assert Subject.from_words(None) == Subject()
    with pytest.raises(UnknownSubjectWord) as raised:
        parse_subject_words("man 35", subject)
    assert raised.value.word == "35"


def test_each_kind_gets_its_own_class_images_rendered_once(pipe: Any) -> None:
    from PIL import Image

    from jobs.worker.model_setup import ServingModel

    person = [Image.new("RGB", (64, 64), "grey")]
    model = ServingModel(pipe, None, None, class_images=person, class_prompt="a photo of a person")
    assert model.class_images_for(Subject().class_prompt) is person
    women = model.class_images_for(Subject("woman", "30s").class_prompt)
    assert women is not None and len(women) == 1 and women is not person
    assert model.class_images_for(Subject("woman", None, True).class_prompt) is women  # rendered once per kind
    assert ServingModel(pipe, None, None).class_images_for("a photo of a man") is None  # prior preservation off
