"""Calibrated FP8 input scales kept on disk: a restart reuses them and renders the same image; other weights, other
calibration renders or a damaged file calibrate afresh."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.diffusion.float8 import Float8Linear, use_float8_linears
from pipeline.diffusion.float8_scales import calibrate_float8, load_input_scales, save_input_scales
from pipeline.diffusion.generation import denoise_looks, generate_headshots
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.serving import CALIBRATION_STEPS, calibrate_float8_on_looks, calibrated_float8
from pipeline.styles import STYLES
from tests.pipeline.test_generation import difference
from tests.pipeline.test_lora_slot import render

LOOKS = [STYLES["linkedin"], STYLES["actor"]]


def fp8_pipeline(model_cache_dir: Path) -> Any:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    use_float8_linears(pipe.unet, scaling="static")
    return pipe


def input_scales(pipe: Any) -> list[float]:
    return [float(m.input_scale) for m in pipe.unet.modules() if isinstance(m, Float8Linear)]


def test_a_restart_reuses_the_kept_scales_and_renders_the_same_image(model_cache_dir: Path, tmp_path: Path) -> None:
    scales_file = tmp_path / "compile" / "float8-scales.json"
    first = fp8_pipeline(model_cache_dir)
    assert not calibrated_float8(first, LOOKS, scales_file)  # nothing kept yet: calibrated, then kept
    assert scales_file.is_file()

    restarted = fp8_pipeline(model_cache_dir)
    assert calibrated_float8(restarted, LOOKS, scales_file)
    assert input_scales(restarted) == input_scales(first)
    assert difference(render(restarted).image, render(first).image) == 0


def test_kept_scales_serve_only_the_same_weights_and_the_same_calibration(
    model_cache_dir: Path, tmp_path: Path
) -> None:
    scales_file = tmp_path / "float8-scales.json"
    calibrated = fp8_pipeline(model_cache_dir)
    calibrated_float8(calibrated, LOOKS, scales_file)
    recipe = json.loads(scales_file.read_text())["recipe"]

    other = fp8_pipeline(model_cache_dir)
    assert not calibrated_float8(other, [STYLES["linkedin"]], tmp_path / "other.json")  # other renders: new file
    layer = next(m for m in other.unet.modules() if isinstance(m, Float8Linear))
    with torch.no_grad():
        layer.weight.mul_(1.5)  # the same name, new weights (a checkpoint updated in place)
    layer.refresh()
    before = input_scales(other)
    assert not load_input_scales(other.unet, scales_file, recipe=recipe)
    assert not load_input_scales(calibrated.unet, scales_file, recipe="another recipe")
    assert input_scales(other) == before  # a refused file changes nothing

    scales_file.write_text('{"format": 1, "recipe": "' + recipe + '", "layers": {"x": 1}}')  # damaged or foreign
    assert not load_input_scales(calibrated.unet, scales_file, recipe=recipe)
    assert not load_input_scales(calibrated.unet, tmp_path / "missing.json", recipe=recipe)


def test_uncalibrated_layers_are_not_kept(model_cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibrate before keeping"):
        save_input_scales(fp8_pipeline(model_cache_dir).unet, tmp_path / "scales.json", recipe="r")


def test_a_folder_that_cannot_keep_the_scales_costs_the_next_start_a_calibration_not_this_one(
    model_cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    pipe = fp8_pipeline(model_cache_dir)
    assert not calibrated_float8(pipe, LOOKS, blocked / "float8-scales.json")
    assert all(m.calibrated for m in pipe.unet.modules() if isinstance(m, Float8Linear))
    assert "the next start calibrates again" in caplog.text
    render(pipe)  # and it renders


def test_looks_calibrated_in_batches_get_the_scales_of_one_render_each(model_cache_dir: Path) -> None:
    looks = list(STYLES.values())
    one_each = fp8_pipeline(model_cache_dir)

    def render_each() -> None:  # what a worker's start did before: one eager render of each look
        for style in looks:
            generate_headshots(one_each, style, count=1, seed=0, batch_size=1, steps=CALIBRATION_STEPS)

    calibrate_float8(one_each.unet, render_each)
    batched = fp8_pipeline(model_cache_dir)
    assert calibrate_float8_on_looks(batched, looks, batch_size=3) == len(input_scales(batched))

    # The same inputs reach every layer; only the batch's float32 sums may round differently. (The renders then differ
    # by FP8's rounding, not less: a scale 1e-6 off moves some values across an e4m3 step. test_float8 bounds a
    # calibrated render against the plain one.)
    assert input_scales(batched) == pytest.approx(input_scales(one_each), rel=1e-5)
    scheduler = batched.scheduler
    # The eight looks share a size and a sampler, and guide at three scales: five at 6.0, two at 5.0, one at 7.0.
    assert denoise_looks(batched, looks, seed=0, steps=2, batch_size=3) == 4
    assert denoise_looks(batched, looks, seed=0, steps=2, batch_size=8) == 3
    assert batched.scheduler is scheduler  # each look's sampler was set for its batch only
