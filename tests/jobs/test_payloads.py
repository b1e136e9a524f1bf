"""The job requests across Redis: an action's mode and source survive the trip; an older payload still reads; no
request names another user's blobs."""

from __future__ import annotations

import pytest

from jobs.contract.keys import lora_key, selfie_key
from jobs.contract.payloads import GenerateRequest, RenderMode, TrainRequest
from pipeline.styles import STYLES


def _request(**changes: object) -> GenerateRequest:
    values: dict[str, object] = {
        "user_key": "local:ann",
        "request_id": "1-2",
        "lora_key": "users/local%3Aann/sessions/1/lora/w.safetensors",
        "style": STYLES["studio"],
        "count": 4,
        "seed": 11,
        "output_prefix": "users/local%3Aann/outputs/1-2/",
    }
    return GenerateRequest(**{**values, **changes})  # type: ignore[arg-type]


def test_an_action_round_trips_and_a_payload_from_before_actions_is_a_prompt_render() -> None:
    action = _request(mode=RenderMode.REMIX, source_key="users/local%3Aann/outputs/1-1/00-seed5.png")
    assert GenerateRequest.from_dict(action.to_dict()) == action
    older = _request().to_dict()
    del older["mode"], older["source_key"]
    assert GenerateRequest.from_dict(older) == _request()


def test_a_source_comes_with_an_action_and_only_with_one() -> None:
    with pytest.raises(ValueError, match="needs a source_key"):
        _request(mode=RenderMode.UPSCALE)
    with pytest.raises(ValueError, match="needs a source_key"):
        _request(source_key="users/local%3Aann/outputs/1-1/00-seed5.png")


@pytest.mark.parametrize(
    "changes",
    [
        {"lora_key": lora_key("local:bob", 1)},
        {"output_prefix": "users/local%3Abob/outputs/1-2/"},
        {"mode": RenderMode.VARY, "source_key": "users/local%3Aann-and-bob/outputs/1-1/00-seed5.png"},
        {"mode": RenderMode.PREVIEW, "reference_keys": (selfie_key("local:ann", 1, 1), selfie_key("local:bob", 1, 1))},
    ],
)
def test_a_render_naming_another_users_blobs_is_refused_by_name(changes: dict[str, object]) -> None:
    # Read from Redis as the worker reads it: whoever built the payload, the worker never sees the request.
    payload = {**_request().to_dict(), **changes}
    with pytest.raises(ValueError, match=r"is not under local:ann's storage folder 'users/local%3Aann/'"):
        GenerateRequest.from_dict(payload)


def test_a_training_naming_another_users_blobs_is_refused_by_name() -> None:
    own = [selfie_key("local:ann", 1, 1)]
    with pytest.raises(ValueError, match=r"selfie_keys 'users/local%3Abob/.*' is not under local:ann's"):
        TrainRequest("local:ann", 1, [*own, selfie_key("local:bob", 1, 1)], lora_key("local:ann", 1))
    payload = {"user_key": "local:ann", "session_id": 1, "selfie_keys": own, "lora_key": lora_key("local:bob", 1)}
    with pytest.raises(ValueError, match=r"lora_key 'users/local%3Abob/.*' is not under local:ann's"):
        TrainRequest.from_dict(payload)
