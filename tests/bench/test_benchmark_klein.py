"""The klein benchmark's code path on the tiny klein model: one run writes every figure beside its baseline (speed is
measured on a GPU; BENCHMARKS.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.benchmark_klein import main


@pytest.mark.usefixtures("fresh_dynamo")
def test_klein_benchmark_writes_every_figure_beside_its_baseline(tmp_path: Path, model_cache: Path) -> None:
    out = tmp_path / "klein.json"
    # Without the two compiles (tens of seconds of tracing on a CPU): the worker's compile is tested with its set-up.
    phases = "train,plain,preview,project"
    args = ["--tiny", "--phases", phases, "--no-project-compile", "--batches", "2", "--cache-dir", str(model_cache)]
    assert main([*args, "--out", str(out)]) == 0

    results = json.loads(out.read_text())
    assert {name: phase["status"] for name, phase in results["phases"].items()} == dict.fromkeys(
        ["build", "train_32_project", "train_32_reference", "render_plain_eager", "preview_plain", "render_project"]
        + ["preview_project", "customer"],
        "ok",
    )

    def positive(value: float) -> bool:
        return value > 0 and math.isfinite(value)

    trained = results["train"]["32"]
    assert positive(trained["project"]["image_steps_per_s"]) and trained["project"]["rank"] == 16
    assert positive(trained["reference"]["image_steps_per_s"]) and trained["reference"]["rank"] == 4
    for mode in ("distilled", "base"):
        for side in ("plain_eager", "project"):
            assert positive(results["render"][mode]["b2"][side]["s_per_image"]), (mode, side)
    for references in ("selfies", "crops"):
        assert positive(results["preview"]["plain_eager"][references]["s_per_image"])
    # The project's preview is measured once pipeline.diffusion.references exists, and says so until then.
    project_preview = results["preview"]["project"]
    assert "not_measured" in project_preview or positive(project_preview["s_per_image"])
    customer = results["gpu_s_per_customer"]
    assert positive(customer["worker_train_steps"]["project_s"]) and positive(
        customer["worker_train_steps"]["reference_s"]
    )
    assert results["architecture"]["transformer_config"]["num_single_layers"] == 2  # the tiny model, not klein 4B


def test_the_klein_profile_runs_on_the_tiny_model(tmp_path: Path, model_cache: Path) -> None:
    from bench.klein_profile import main as profile_main

    out = tmp_path / "profile.json"
    argv = ["--tiny", "--steps", "1", "--batch", "2", "--render-batch", "1", "--cache-dir", str(model_cache)]
    assert profile_main([*argv, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["train"]["model_tflop"] > 0 and results["render"]["wall_s"] > 0
