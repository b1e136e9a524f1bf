"""``bench.first_request_after_training`` on the tiny model: a worker set up as a worker does, trainings through its
training path, each followed by three requests split by stage or profiled (the slowdown itself is measured on a
GPU)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from PIL import Image

from bench.first_request_after_training import gc_pauses, main


def test_gc_pauses_counts_a_collection_of_the_oldest_generation() -> None:
    with gc_pauses() as pauses:
        gc.collect()  # a full collection: the oldest generation
    assert pauses["gc_oldest"] == 1 and pauses["gc_s"] >= 0
    with gc_pauses() as pauses:
        gc.collect(0)
    assert pauses["gc_oldest"] == 0


@pytest.mark.usefixtures("fresh_dynamo")
def test_each_round_trains_then_times_or_profiles_its_first_and_second_request(
    tmp_path: Path, model_cache_dir: Path, selfie_images: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADSHOT_MODEL_CACHE_DIR", str(model_cache_dir))
    monkeypatch.setenv("HEADSHOT_TRAIN_STEPS", "4")
    selfies = tmp_path / "selfies"
    selfies.mkdir()
    for number, image in enumerate(selfie_images[:3]):
        image.save(selfies / f"selfie-{number}.jpg")
    out = tmp_path / "first-request.json"

    args = ["--model", "tiny", "--selfies", str(selfies), "--steps", "2", "--rounds", "2", "--profile"]
    assert main([*args, "--out", str(out)]) == 0

    results = json.loads(out.read_text())
    assert results["selfies"] == 3 and results["python_objects_tracked_when_ready"] > 0
    stages = ("swap_s", "render_s", "clear_s", "request_s")
    names = ("first_previous_lora", "first_new_lora", "second_new_lora")
    timed = [*results["before_training"], *(results["rounds"][0][name] for name in names)]
    assert len(timed) == 5
    for request in timed:
        assert all(request[stage] > 0 for stage in stages), request
        assert request["request_s"] >= request["render_s"] and request["gc_s"] >= 0
    last = results["rounds"][1]
    assert last["training_s"] > 0 and last["training_gc"]["gc_s"] >= 0
    assert all(last[name]["variant"] == f"profile: {name}" and last[name]["wall_s"] > 0 for name in names)
