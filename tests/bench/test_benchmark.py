"""The benchmark's code path on the tiny model: every figure is produced (speed itself is measured on a GPU)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.benchmark import run_benchmark
from bench.profiling import kernel_kind
from pipeline.diffusion.loading import load_base_pipeline


def test_benchmark_measures_every_figure_on_the_tiny_model(model_cache: Path) -> None:
    # A pipeline of its own: the benchmark leaves a LoRA slot and inference settings on the one it measures.
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    results = run_benchmark(lambda: pipe, quick=True, compile=False, log=lambda _line: None)
    trained = ("train_naive", "train_project_a", "train_project_b_after_compile")
    rendered = ("generate_plain_b1", "generate_plain_b4", "generate_project_b1", "generate_project_b4")
    for key in trained + rendered:
        figures = results[key]
        rate = figures.get("image_steps_per_s", figures.get("s_per_image"))
        assert rate is not None and rate > 0 and math.isfinite(rate), (key, figures)
    assert results["lora_switch"]["seconds"] > 0
    assert results["lora_switch"]["recompiled_graphs"] == 0  # nothing was compiled, so nothing may recompile
    assert results["gpu_s_per_customer"]["naive"] > 0
    assert results["render_size"] == "56x72"


def test_hot_path_benchmark_times_every_request_variant_on_the_tiny_model(tmp_path: Path) -> None:
    import json

    from bench.benchmark_hotpaths import main

    out = tmp_path / "hotpaths.json"
    assert main(["--model", "tiny", "--only", "request", "--steps", "2", "--out", str(out)]) == 0
    figures = {entry["variant"]: entry for entry in json.loads(out.read_text())["request"]}
    assert figures["VAE decode alone, batch 4"]["decode_s"] > 0
    for variant in (
        "no LoRA (base pipeline)",
        "slot, LoRA layers run (worker before)",
        "slot merged into the base weights (worker now)",
    ):
        assert 0 < figures[variant]["render_s"] <= figures[variant]["request_s"], variant


@pytest.mark.usefixtures("fresh_dynamo")
def test_float8_benchmark_times_each_scheme_against_eager_and_splits_the_profile_by_kind(tmp_path: Path) -> None:
    import json

    from bench.benchmark_float8 import main

    out = tmp_path / "fp8.json"
    # The worker's scheme with the worker's compile scope: the whole UNet's inductor compiles took minutes of CI's CPU
    # and test no other code (the whole-UNet compile is tested through the worker's setup).
    # And with the glue's operators (the ResNet blocks and the transformers' entries and exits fused) and one FP8 input
    # for the projections that read one tensor.
    variants = "static-blocks,static-blocks-gn-fused-tokens-shared"
    assert main(["--model", "tiny", "--variants", variants, "--profile", "--out", str(out)]) == 0
    eager, static, profile, fused, _ = json.loads(out.read_text())["unet"]
    assert fused["fused_resnet_blocks"] > 0 and fused["fused_transformers"] > 0 and fused["shared_input_groups"] > 0
    assert fused["relative_error_vs_bf16_eager"] == pytest.approx(static["relative_error_vs_bf16_eager"], abs=0.01)
    assert eager["variant"] == "float32, eager (baseline)" and eager["call_s"] > 0
    assert static["variant"] == "static FP8 blocks compiled" and static["call_s"] > 0
    assert static["fp8_layers"] == static["calibrated"] > 0
    assert 0 < static["relative_error_vs_bf16_eager"] < 0.1  # FP8's rounding, not a broken layer
    assert profile["variant"] == "profile: static FP8 blocks compiled" and profile["ms_per_call"] > 0
    assert math.isclose(sum(profile["share_by_kind"].values()), 1.0, abs_tol=0.01)
    assert "matrix products" in profile["share_by_kind"]  # FP8 products are sorted as products
    for kind, ops in profile["costliest_by_kind"].items():  # each kind's costliest are of that kind, within its total
        assert ops and all(kernel_kind(op["name"]) == kind for op in ops)
        assert sum(op["share"] for op in ops) <= profile["share_by_kind"][kind] + 1e-3


@pytest.mark.usefixtures("fresh_dynamo")
def test_unet_benchmark_for_the_worker_only_times_its_compile_against_eager_and_profiles_it(tmp_path: Path) -> None:
    import json

    from bench.benchmark_unet import main

    out = tmp_path / "unet.json"
    assert main(["--model", "tiny", "--worker-only", "--profile", "--out", str(out)]) == 0
    entries = json.loads(out.read_text())["unet"]
    worker = "float32, transformer blocks compiled (as a GPU worker compiles)"
    assert [entry["variant"] for entry in entries] == ["float32, eager", worker, f"profile: {worker}"]
    assert entries[1]["call_s"] > 0 and entries[2]["ms_per_call"] > 0


def test_flop_count_of_a_unet_call_splits_by_operator_without_touching_the_weights(tmp_path: Path) -> None:
    import json

    from bench.benchmark_unet import main

    out = tmp_path / "flops.json"
    assert main(["--model", "tiny", "--flops-only", "--out", str(out)]) == 0
    (count,) = json.loads(out.read_text())["unet"]
    by_operator = count["gflop_by_operator"]
    assert {"convolution", "bmm"} <= by_operator.keys() and ({"addmm", "mm"} & by_operator.keys())
    assert all(gflop > 0 for gflop in by_operator.values())
    assert math.isclose(sum(by_operator.values()), count["gflop_per_call"], rel_tol=0.05)


# Kernel names as an H100 profile of the SDXL UNet printed them (benchmarks/2026-11-24-h100-unet-profile.json).
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1", "attention"),
        ("nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_bias_TNN", "matrix products"),
        ("nvjet_sm90_qqtst_128x128_128x6_1x1_h_bz_coopA_algo2_ovscale_TNT", "matrix products"),
        ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", "convolutions"),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, float>", "layout conversions"),
        ("triton_red_fused__scaled_mm__to_copy_abs_add_amax_clamp_div_gelu_mul_split_t_view_60", "FP8 scaling"),
        ("triton_red_fused__scaled_mm__to_copy_abs_add_amax_clamp_div_native_layer_norm_t_64", "FP8 scaling"),
        ("triton_per_fused_native_group_norm_12", "norms"),
        ("triton_poi_fused_gelu_mul_split_view_60", "elementwise and other"),
        ("triton_poi_fused_convolution_add_7", "elementwise and other"),
        ("aten::convolution", "convolutions"),
        ("aten::_scaled_mm", "matrix products"),
        ("aten::addmm", "matrix products"),
        ("aten::native_group_norm", "norms"),
        # The project's Triton kernels, by their function names: every one of headshot::group_norm's is a norm's.
        ("_group_norm_nchw_moments", "norms"),
        ("_group_norm_merge_sums", "norms"),
        ("_group_norm_nhwc_input_gradient", "norms"),
        ("_geglu_backward", "elementwise and other"),
        # A transformer's entry normalizes into its tokens; its exit only moves them back (and adds the residual).
        ("_group_norm_nchw_to_tokens", "norms"),
        ("_tokens_to_nchw", "layout conversions"),
    ],
)
def test_profiled_kernels_are_sorted_by_the_work_they_do(name: str, kind: str) -> None:
    assert kernel_kind(name) == kind


@pytest.mark.parametrize("hosts", [False, True], ids=["restart", "new-host"])
def test_worker_ready_starts_a_worker_twice_on_one_compile_cache_or_on_two_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hosts: bool
) -> None:
    import json

    from bench.worker_ready import main

    # The starts' plumbing on a CPU worker (eager: a compiled tiny worker's warm-up took minutes of CI's CPU).
    monkeypatch.delenv("HEADSHOT_COMPILE_CACHE_DIR", raising=False)
    # A kernels folder named in the environment (as a GPU call script names one) is a restart's, never a new host's.
    named = tmp_path / "named-kernels"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(named))
    out = tmp_path / "ready.json"
    # With cuDNN's autotuner on (a worker leaves it off): the switch reaches each start's own process.
    args = ["--model", "tiny", "--starts", "2", "--cudnn-autotune", "on", *(["--hosts"] if hosts else [])]
    assert main([*args, "--out", str(out)]) == 0
    starts = json.loads(out.read_text())["starts"]
    assert all(start["worker"]["cudnn_autotune"] is True for start in starts)
    assert len(starts) == 2 and all(start["worker_ready_s"] > 0 for start in starts)
    # A restart finds the first start's folder; a new host starts on an empty one of its own.
    assert (starts[0]["compile_cache_dir"] == starts[1]["compile_cache_dir"]) is not hosts
    assert starts[1]["cached_files_at_start"] == 0 or not hosts
    kernels = [start["kernels_dir"] for start in starts]
    if hosts:  # (each start's own folder once it compiles: an eager CPU worker leaves torch's default)
        assert str(named) not in kernels
    else:
        assert kernels == [str(named), str(named)]
    assert all(start["worker"]["compile_profile"]["unet"] is False for start in starts)  # a CPU worker, eager
    # Each start's phases from its own log: an eager CPU worker loads its model and is ready, nothing between.
    assert all(set(start["phases_s"]) == {"model", "ready"} for start in starts)
    assert all(0 < start["phases_s"]["model"] <= start["phases_s"]["ready"] for start in starts)


def test_a_starts_phases_are_read_from_its_log_as_the_worker_writes_it() -> None:
    from bench.worker_ready import start_phases

    # Lines of the H100 cold start of 2026-12-05 (host C, benchmarks/2026-12-05-h100-fifteenth-*-host-c-*).
    log = [
        "model random-sdxl (sdxl) loaded in 11.9 s",
        "FP8 input scales calibrated (kept in /tmp/hc/float8-scales-90cd9ec8c79bd5e6.json) in 13.5 s",
        "training step compiled in 52 s, 5 batch shapes captured as CUDA graphs",
        "warmed denoiser before the VAE decoder, custom (4, 5) in 10.0 s",
        "VAE decoder compiled beside the start: 8 graphs (0 from the cache), ready 76.6 s after it began, 8.63 GiB of "
        "the GPU reserved at most",
        "warmed VAE decoder in 4.4 s",
        "warmed custom variations at 928x1152, batch 4 in 1.3 s",
        "denoiser and VAE decoder compiled for every style and batch size in 24 s",
        "ready to serve in 103.3 s (66.8 of the GPU's 79.2 GiB reserved, 68.8 GiB at most while starting)",
        "1168852 objects of the start kept out of garbage collections (a full collection took 0.54 s)",
        # jobs.worker.state's last line of a start (2026-12-06 on), where arq begins to poll the queue.
        "taking jobs 109.8 s after the worker's start began",
    ]
    assert start_phases(log) == {
        "model": 11.9,
        "fp8 scales": 13.5,
        "training": 52.0,
        "first look's denoiser": 10.0,
        "decoder process": 76.6,
        "decoder wait and load": 4.4,
        "rendering": 24.0,
        "ready": 103.3,
        "taking jobs": 109.8,
    }


def test_attention_benchmark_records_every_attention_call_of_a_unet_call_as_diffusers_makes_it(pipe: Any) -> None:
    import torch.nn.functional as F

    from bench.benchmark_attention import attention_shapes

    original = F.scaled_dot_product_attention
    shapes = attention_shapes(pipe, batch=2)

    assert F.scaled_dot_product_attention is original  # the recorder is gone again
    self_attention = sum(1 for name, _ in pipe.unet.named_modules() if name.endswith(".attn1"))
    cross_attention = sum(1 for name, _ in pipe.unet.named_modules() if name.endswith(".attn2"))
    prompt_tokens = pipe.text_encoder.config.max_position_embeddings
    calls = {"self": 0, "cross": 0}
    for ((query, query_strides), (keys, _), _), count in shapes.items():
        assert query[0] == 2
        calls["cross" if keys[2] == prompt_tokens else "self"] += count
        # diffusers hands SDPA transposed views of its projections (the layout decides which backends may run).
        assert query_strides[1] < query_strides[2]
    assert calls == {"self": self_attention, "cross": cross_attention}
    assert self_attention > 0


def test_slot_benchmark_splits_a_swap_into_reading_factoring_and_merging(tmp_path: Path) -> None:
    import json

    from bench.benchmark_slot import main

    out = tmp_path / "slot.json"
    assert main(["--model", "tiny", "--repeats", "1", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    split = figures["slot"]["swap_in_split"]
    assert set(split) == {"read_file_s", "factors_s", "merge_s"} and all(value > 0 for value in split.values())
    assert figures["slot"]["swap_in_s"] > 0 and figures["hotswap_baseline"]["swap_in_s"] > 0


@pytest.mark.usefixtures("fresh_dynamo")
def test_decoder_benchmark_times_each_way_at_a_workers_shapes_and_counts_their_graphs(tmp_path: Path) -> None:
    import json

    from bench.benchmark_decoder import WAYS, main

    out = tmp_path / "decoder.json"
    # The eager backend traces and guards as inductor does (the graph counts), without minutes of C++ compiling.
    assert main(["--model", "tiny", "--repeats", "1", "--backend", "eager", "--out", str(out)]) == 0
    entries = json.loads(out.read_text())["decodes"]
    totals = {entry["way"]: entry["graphs_compiled"] for entry in entries if "graphs_compiled" in entry}
    # The worker's regions: small graphs, one per block shape, single images eager; compiled, they double them.
    worker, compiled_too = totals.pop("worker"), totals.pop("regions with single images compiled")
    assert worker > 1 and compiled_too == 2 * worker and totals.pop("decoder regions with torch's norms") > 1
    # The whole decoder as one graph (the ways before): single images on a graph of their own cost a second.
    assert totals == {
        "eager": 0,
        "single images compiled": 2,
        "torch's norms": 1,
        "one graph, the operator's norms": 1,
        "NCHW with torch's norms": 1,
        "NCHW with the operator's norms": 1,
    }
    decodes = [entry for entry in entries if "shape" in entry]
    assert len(decodes) == 3 * len(WAYS)
    assert {entry["latents"][0] for entry in decodes} == {1, 4}  # a request's batch and the single images
    assert all(entry["decode_s"] > 0 and entry["max_difference_vs_eager"] < 1e-3 for entry in decodes)


def test_the_kernel_benchmarks_tiles_are_read_whole_or_refused_naming_them(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from bench.measure import add_tiles_option, parse_tiles

    parser = argparse.ArgumentParser(prog="bench", exit_on_error=False)
    add_tiles_option(parser, "kernel", "ROWSxCOLUMNSxWARPS", "128x64x4")
    assert parse_tiles(parser, parser.parse_args(["--tiles", "128x64x4,64x64x8"]), "ROWSxCOLUMNSxWARPS") == (
        (128, 64, 4),
        (64, 64, 8),
    )
    assert parse_tiles(parser, parser.parse_args([]), "ROWSxCOLUMNSxWARPS") == ()
    for bad in ("128x64", "128x64x4,axbxc"):
        with pytest.raises(SystemExit):
            parse_tiles(parser, parser.parse_args(["--tiles", bad]), "ROWSxCOLUMNSxWARPS")
        assert f"--tiles takes ROWSxCOLUMNSxWARPS, 3 whole numbers each, not '{bad}'" in capsys.readouterr().err


def test_a_kernel_benchmark_sums_each_way_over_a_unet_calls_shapes(tmp_path: Path) -> None:
    import json

    from bench.measure import per_unet_call

    # Two shapes, 10 and 60 of each a call; one way failed at the second shape (a message, not a number).
    results: dict[str, Any] = {
        "shapes": [
            {"calls": 10, "worker_ms": 0.5, "kernel_ms": 0.25, "tile_ms": 0.1, "kernel_error": 0.01},
            {"calls": 60, "worker_ms": 0.1, "kernel_ms": 0.05, "tile_ms": "OutOfResources: shared memory"},
        ]
    }
    out = tmp_path / "results.json"
    per_unet_call(results, "shapes", "calls", "attentions", out)
    totals = results["ms_per_unet_call"]
    assert totals["worker_ms"] == 11.0 and totals["kernel_ms"] == 5.5 and math.isnan(totals["tile_ms"])
    assert "kernel_error" not in totals
    assert json.loads(out.read_text())["ms_per_unet_call"]["kernel_ms"] == 5.5


def test_a_float8_variants_name_sets_its_module_switches_and_the_next_variant_gets_the_workers_back() -> None:
    from bench import benchmark_float8
    from pipeline.diffusion import float8, float8_conv

    worker = (float8.FAST_ACCUMULATION, float8_conv.NORM_WRITES_FLOAT8)
    precise, plain = "static-blocks-cl-gn-fused-tokens-shared-fp8convcast-preciseacc-graphs", "static-blocks-graphs"
    benchmark_float8._switches(precise.split("-"))  # as run_variants splits a variant's name
    assert (float8.FAST_ACCUMULATION, float8_conv.NORM_WRITES_FLOAT8) == (False, False)
    benchmark_float8._switches(plain.split("-"))
    assert (float8.FAST_ACCUMULATION, float8_conv.NORM_WRITES_FLOAT8) == worker == (True, True)
