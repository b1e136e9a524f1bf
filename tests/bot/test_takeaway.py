"""Take it home: /favorites zip holds exactly the favorites' bytes, in parts within the upload limit; /export hands
over a LoRA that diffusers loads and a kohya copy with kohya's key names; each refusal says what to do."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from safetensors import safe_open

from bot.core.takeaway import zip_parts
from bot.core.types import OutgoingImage
from tests.bot.flows import seed_ready
from tests.harness import Harness


async def _favorite_bytes(harness: Harness) -> dict[str, bytes]:
    rows = await harness.app.store.favorites(harness.chat.chat.user_key)
    return {row.storage_key.rsplit("/", 1)[-1]: await harness.app.core.storage.get(row.storage_key) for row in rows}


async def test_favorites_zip_holds_exactly_the_favorites(harness: Harness, selfie_dir: Path) -> None:
    await seed_ready(harness, selfie_dir)
    first = next(number for number, message in harness.port.messages.items() if message.image_path)
    await harness.say(f"react {first}")  # the second favorite
    expected = await _favorite_bytes(harness)
    assert len(expected) == 2

    answer = await harness.say("/favorites zip")
    assert "Your 2 favorite headshots in one ZIP file:" in answer
    (archive,) = harness.port.files
    assert archive.name == "favorite-headshots.zip"
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None
        assert {name: opened.read(name) for name in opened.namelist()} == expected


def test_zip_parts_each_fit_the_limit_and_together_hold_every_file() -> None:
    files = [OutgoingImage(f"headshot-{n}.png", bytes([n]) * 4000) for n in range(7)]
    parts = zip_parts(files, 10_000, "favorite-headshots")
    assert [part.filename for part in parts][:2] == ["favorite-headshots-1-of-4.zip", "favorite-headshots-2-of-4.zip"]
    assert all(len(part.data) <= 10_000 for part in parts)
    found: dict[str, bytes] = {}
    for part in parts:
        with zipfile.ZipFile(io.BytesIO(part.data)) as opened:
            found |= {name: opened.read(name) for name in opened.namelist()}
    assert found == {item.filename: item.data for item in files}


async def test_refusals_say_what_to_do(harness: Harness, selfie_dir: Path) -> None:
    assert "There is no trained model to export yet" in await harness.say("/export")
    assert "No favorites yet" in await harness.say("/favorites zip")
    assert "/favorites takes no 'tar'" in await harness.say("/favorites tar")
    await seed_ready(harness, selfie_dir)  # a model row whose file the seed never wrote
    assert "Your model's file is gone" in await harness.say("/export")
    assert harness.port.files == []


async def test_export_gives_a_loadable_diffusers_lora_and_a_kohya_copy(
    harness: Harness, selfie_dir: Path, tiny_pipe: Any
) -> None:
    await harness.train_to_ready(selfie_dir)
    answer = await harness.say("/export")
    assert 'pipe.load_lora_weights("headshot-lora-1-diffusers.safetensors")' in answer
    assert "<lora:headshot-lora-1-kohya:1> sks person" in answer
    diffusers_copy, kohya_copy = harness.port.files
    assert (diffusers_copy.name, kohya_copy.name) == (
        "headshot-lora-1-diffusers.safetensors",
        "headshot-lora-1-kohya.safetensors",
    )

    with safe_open(str(kohya_copy), framework="np") as weights:
        keys = set(weights.keys())  # noqa: SIM118
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert all(key.startswith("lora_unet_") for key in keys)
    with safe_open(str(diffusers_copy), framework="np") as weights:
        assert "unet.lora_alpha" in json.loads((weights.metadata() or {})["lora_adapter_metadata"])

    tiny_pipe.load_lora_weights(str(diffusers_copy), adapter_name="exported")
    try:
        assert tiny_pipe.get_list_adapters() == {"unet": ["exported"]}
    finally:
        tiny_pipe.delete_adapters("exported")

    harness.port.upload_limit_bytes = 1000  # a chat that takes less than a model file
    answer = await harness.say("/export")
    assert "headshot-lora-1-kohya.safetensors is " in answer and "more than the 0.0 MB this chat takes" in answer
    assert len(harness.port.files) == 2  # nothing more was sent
