"""The training benchmarks' code paths on the tiny model: every figure is produced (speed is measured on a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.usefixtures("fresh_dynamo")
def test_unet_training_benchmark_times_each_layout_and_scope_against_eager(tmp_path: Path) -> None:
    import json

    from bench.benchmark_unet_training import main

    out = tmp_path / "unet-training.json"
    # The blocks, the norms and the layout switch; the blocks dynamic from their first call; the regions without
    # peft's input casts; concatenations compiled input by input; the feed-forward gates through headshot::geglu,
    # and the group norms through headshot::group_norm too; the frozen base in FP8 with calibrated input and gradient
    # scales; the LoRA through headshot::lora_linear, the ResNet blocks through headshot::group_norm_silu too, the
    # transformers' entries and exits through the token operators too, and the LoRA off.
    modes = [
        "blocks-norms-nchw",
        "blocks-nchw-nocast-dynamic",
        "regions-nocast",
        "blocks-nchw-nocast-concat",
        "blocks-nchw-nocast-geglu",
        "blocks-nchw-nocast-geglu-gn",
        "regions-nocast-geglu-gn",
        "blocks-nchw-nocast-geglu-gn-fusedlora",
        "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets",
        "blocks-nchw-nocast-geglu-gn-fusedlora-fusedresnets-fusedtokens",
        "blocks-nchw-nocast-geglu-gn-nolora",
        "blocks-nchw-nocast-fp8-static",
    ]
    assert (
        main(["--model", "tiny", "--batch", "1", "--backend", "eager", "--modes", ",".join(modes), "--out", str(out)])
        == 0
    )
    entries = json.loads(out.read_text())["unet_training"]
    assert [entry["variant"] for entry in entries] == ["eager, channels-last", *modes]
    for entry in entries:
        assert entry["image_steps_per_s"] > 0 and entry["call_s"] > 0, entry
    # Every compile and layout trains the same LoRA gradient as eager, up to float32 rounding; FP8 within its rounding
    # (tests/pipeline/test_float8_training.py bounds it against the batch-to-batch noise).
    assert all(entry["gradient_relative_difference"] < 1e-4 for entry in entries[1:-2])
    fused = [entry for entry in entries if "-fusedresnets" in entry["variant"]]
    assert len(fused) == 2 and all(entry["fused_resnet_blocks"] > 0 for entry in fused)
    assert all("fused_resnet_blocks" not in entry for entry in entries if entry not in fused)
    assert fused[1]["fused_transformers"] > 0 and "fused_transformers" not in fused[0]
    base_only = entries[-2]  # the LoRA off, the backward to the latents: what the LoRA's own work costs a call
    assert base_only["lora"].startswith("off") and "gradient_relative_difference" not in base_only
    fp8 = entries[-1]
    assert fp8["fp8_training_layers"] == fp8["calibrated"] == fp8["fp8_layers"] > fp8["gradients_calibrated"] > 0
    assert 0 < fp8["gradient_relative_difference"] < 0.3


@pytest.mark.usefixtures("fresh_dynamo")
def test_unet_training_benchmark_times_a_bucket_compiled_after_another_as_a_warm_up_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from bench.benchmark_unet_training import main

    out = tmp_path / "unet-training.json"
    args = ["--model", "tiny", "--batch", "1", "--backend", "eager", "--modes", "blocks-nchw-nocast"]
    assert main([*args, "--aspect", "3:4", "--after", "1:1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    # The timed calls at the portrait bucket's latents, the square's call made first in each mode.
    assert results["aspect"] == "3:4" and results["latents"][2] > results["latents"][3]
    assert results["compiled_after"][2] == results["compiled_after"][3] != results["latents"][2]
    eager, mode = results["unet_training"]
    assert mode["call_s"] > 0 and mode["gradient_relative_difference"] < 1e-4
    with pytest.raises(SystemExit):
        main([*args, "--aspect", "3x4"])
    assert "'3x4' is not an aspect W:H" in capsys.readouterr().err


@pytest.mark.usefixtures("fresh_dynamo")
def test_training_benchmark_times_the_reference_the_eager_baseline_and_a_workers_two_users(
    tmp_path: Path, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from bench.benchmark_training import main

    # As a CPU worker trains (eagerly: the slot's compiled path is tested in tests/pipeline/test_training_slot.py and
    # tests/jobs/test_model_setup.py), at batch 2: 22 image-steps are 11 optimizer steps, so the rate spans two
    # progress reports (at 10 and 11).
    monkeypatch.setenv("HEADSHOT_MODEL_CACHE_DIR", str(model_cache_dir))
    monkeypatch.setenv("HEADSHOT_TRAIN_BATCH_SIZE", "2")
    out = tmp_path / "training.json"
    args = ["--model", "tiny", "--image-steps", "22", "--reference-steps", "2", "--profile", "1"]
    assert main([*args, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    figures = {entry["variant"]: entry for entry in results["train"]}
    plan = results["plan_batch"]
    assert list(figures) == [
        "diffusers' reference loop, batch 1, eager",
        "project, fresh adapter, eager",
        f"worker, batch {plan}, first user",
        f"worker, batch {plan}, next user",
    ]
    for variant, entry in figures.items():
        assert entry["image_steps_per_s"] > 0 and entry["tflops"] > 0, variant
    assert results["tflop_per_image_step"] > 0 and results["worker_training_ready_s"] >= 0
    assert results["profile"]["wall_s"] > 0


def test_encoding_benchmark_times_each_way_of_a_jobs_first_phase(tmp_path: Path) -> None:
    import json

    from bench.benchmark_encoding import WAYS, main

    out = tmp_path / "encoding.json"
    assert main(["--model", "tiny", "--count", "2", "--repeats", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    timed = [entry for entry in results["encodings"] if entry["way"] in WAYS]
    assert [entry["way"] for entry in timed] == list(WAYS)
    assert all(entry["first_call_s"] > 0 and entry["warm_s"] > 0 for entry in timed)
    assert results["encodings"][0]["way"] == "decode whole, one at a time (before)"  # the host's part first


@pytest.mark.usefixtures("fresh_dynamo")
def test_slot_compile_times_a_workers_first_training_job_and_counts_its_graphs(tmp_path: Path) -> None:
    import json

    from bench.slot_compile import main

    out = tmp_path / "slot-compile.json"
    assert main(["--backend", "eager", "--steps", "2", "--aspects", "3:4,1:1", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [job["aspect"] for job in figures["jobs"]] == ["3:4", "1:1"]
    assert all(job["job_s"] > 0 and len(job["losses"]) >= 1 for job in figures["jobs"])
    # The tiny model's blocks are one width: one graph, the first transformer's included (needs_gradient_on_entry),
    # and the second bucket's tokens in it (dynamic_token_count).
    assert [job["graphs"] for job in figures["jobs"]] == [1, 0] and figures["graphs"] == 1


def test_saved_activations_counts_what_a_training_call_keeps_with_and_without_the_fused_resnet_blocks(
    tmp_path: Path,
) -> None:
    import json

    from bench.saved_activations import main

    out = tmp_path / "saved.json"
    assert main(["--model", "tiny", "--batch", "2", "--latents", "16x16", "--out", str(out)]) == 0
    plain, fused = json.loads(out.read_text())["saved_for_backward"]
    assert plain["fused_resnet_blocks"] == 0 and fused["fused_resnet_blocks"] > 0
    assert plain["tensors"] > 0 and 0 < fused["gib"] < plain["gib"]  # the SiLUs' inputs are no longer kept
    assert fused["gib_less"] == pytest.approx(plain["gib"] - fused["gib"], abs=1e-3)
