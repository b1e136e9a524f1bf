"""``bench.calibration_cost`` on the tiny model: both ways calibrate, and the merged slot dispatches fewer operators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.calibration_cost import main


def test_the_merged_slots_calibration_dispatches_fewer_operators(
    model_cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", "tiny", "--model-cache-dir", str(model_cache_dir), "--device", "cpu", "--runs", "1"]) == 0
    ways = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ways"]
    # The zero LoRA's products, scale and add on every covered layer, gone: a third of the tiny UNet's operators.
    assert ways["slot merged"]["ops_a_unet_call"] < 0.8 * ways["zero LoRA run"]["ops_a_unet_call"]
    assert all(len(way["seconds"]) == 1 and way["seconds"][0] > 0 for way in ways.values())
