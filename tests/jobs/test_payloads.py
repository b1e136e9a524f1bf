"""The generation request across Redis: an action's mode and source survive the trip; an older payload still reads."""

from __future__ import annotations

import pytest

from jobs.contract.payloads import GenerateRequest, RenderMode
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
