"""A worker's start compiles its VAE decoder in a process of its own: the worker then finds every decoder graph of its
warm-up in inductor's cache and compiles none; a process that fails costs the start only the time."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.settings import Settings
from jobs.worker.decoder_process import DecoderProcess, compiles_decoder_apart, kept_note
from jobs.worker.model_setup import serving_renders, start_decoder_process, use_group_norm_operators
from pipeline.diffusion.acceleration import use_channels_last, use_fast_maths
from pipeline.diffusion.loading import load_base_pipeline
from pipeline.diffusion.lora_slot import LoraSlot
from pipeline.diffusion.serving import warm_for_serving


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.timeout(600)  # the process compiles a dozen graphs with inductor: ~45 s alone on a 2-core box
# On CUDA the decoder is set up as a GPU worker's (its norms through headshot::group_norm, channels-last, TF32), in
# the worker by model_setup and acceleration, in the process by decoder_compile.serving_decoder: both must agree.
@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU worker's decoder set-up")
        ),
    ],
)
def test_the_worker_loads_every_decoder_graph_the_process_beside_its_start_compiled(
    tmp_path: Path,
    model_cache: Path,
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from torch._dynamo.utils import counters
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # As a worker finds it: importing torch._dynamo wrote inductor's default folder there (restored after the test).
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        model="tiny",
        device=device,
        model_cache_dir=model_cache,
        compile_cache_dir=tmp_path / "compile",
        compile_unet=True,
        compile_training=False,
        compile_decoder_apart=True,  # unset, on CUDA GPUs of 72 GiB or more only
        headshots_per_request=2,
        warm_aspects="profile,square",
    )
    pipe = load_base_pipeline("tiny", device=device, cache_dir=model_cache)
    if device == "cuda":  # as prepare_model and optimize_for_inference set a GPU worker's pipeline up
        use_group_norm_operators(pipe, render_graphs=False)
        use_fast_maths(pipe)
        use_channels_last(pipe, unet=False)
    caplog.set_level(logging.INFO, logger="jobs.worker.decoder_process")
    process = start_decoder_process(pipe, settings, settings.compile_profile(device), device)
    assert process is not None
    compiled = process.wait()
    assert compiled is not None and compiled["graphs"] > 0
    assert compiled["cache_misses"] == compiled["graphs"] and compiled["cache_hits"] == 0  # an empty folder
    assert "VAE decoder compiled beside the start" in caplog.text

    # The worker's warm-up, its UNet eager: every decoder graph it needs comes out of the process's kernels.
    counters.clear()
    styles, batches, previews = serving_renders(settings)
    slot = LoraSlot(pipe, max_rank=4)
    caplog.set_level(logging.INFO, logger="pipeline.diffusion.serving")
    warm_for_serving(pipe, slot, styles=styles, batch_sizes=batches, preview_batch_sizes=previews)
    assert counters["inductor"]["fxgraph_cache_miss"] == 0
    assert counters["inductor"]["fxgraph_cache_hit"] == compiled["graphs"]
    # What the worker's log says of it, where a GPU start's reader looks.
    assert f"VAE decoder: {compiled['graphs']} graphs from inductor's cache, 0 compiled" in caplog.text

    # A restart on the same folder starts no process: the graphs are there, and the worker loads them itself.
    caplog.clear()
    caplog.set_level(logging.INFO, logger="jobs.worker.model_setup")
    assert start_decoder_process(pipe, settings, settings.compile_profile(device), device) is None
    assert "the VAE decoder's graphs are kept in" in caplog.text


def test_a_decoder_process_that_fails_leaves_the_compile_to_the_worker_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-checkpoint"
    missing.mkdir()  # a local folder that is no checkpoint: the load fails at once, as a broken model volume would
    process = DecoderProcess.start(
        model=str(missing), model_cache_dir=tmp_path / "models", compile_cache_dir=tmp_path / "compile",
        device="cpu", dtype="float32", backend="inductor", shapes=[(1, 4, 8, 8)],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="jobs.worker.decoder_process"):
        assert process.wait() is None
    assert "the worker compiles it" in caplog.text and str(missing) in caplog.text  # the load error's own words


def test_a_decoder_process_whose_output_ends_in_something_else_counts_as_failed(tmp_path: Path) -> None:
    # A process that exits 0 but prints no result last (a library's line after it) is not trusted.
    process = DecoderProcess(
        subprocess.Popen(
            [sys.executable, "-c", "print('{\"graphs\": 3, \"cache_hits\": 0}'); print('done')"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ),
        tempfile.TemporaryFile("w+"),  # noqa: SIM115  # the process closes it once waited for
        0.0,
    )
    assert process.wait() is None and not process.running


def test_a_start_that_fails_first_leaves_no_decoder_process_behind(tmp_path: Path, model_cache: Path) -> None:
    process = DecoderProcess.start(
        model="tiny", model_cache_dir=model_cache, compile_cache_dir=tmp_path / "compile", device="cpu",
        dtype="float32", backend="inductor", shapes=[(1, 4, 8, 8)],
    )  # fmt: skip
    assert process.running
    with pytest.raises(RuntimeError, match="training failed"), process:  # as prepare_model holds it
        raise RuntimeError("training failed")
    assert not process.running and process.result is None  # stopped, not left compiling


def test_left_unset_the_decoder_compiles_apart_only_on_a_large_gpu(model_cache: Path) -> None:
    settings = Settings(_env_file=None, model="tiny", model_cache_dir=model_cache, compile_unet=True)  # type: ignore[call-arg]
    assert settings.compile_decoder_apart is None
    assert not compiles_decoder_apart(None, "cpu") and compiles_decoder_apart(True, "cpu")
    assert not compiles_decoder_apart(False, "cuda")  # an explicit value wins, without asking the GPU
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    assert start_decoder_process(pipe, settings, settings.compile_profile("cpu"), "cpu") is None
    eager = settings.model_copy(update={"compile_decoder_apart": True, "compile_backend": "eager"})
    assert start_decoder_process(pipe, eager, eager.compile_profile("cpu"), "cpu") is None  # no cache to carry graphs


def test_the_kept_graphs_note_names_everything_that_decides_the_graphs(tmp_path: Path) -> None:
    made: dict[str, Any] = {"model": "tiny", "device": "cpu", "dtype": "float32", "backend": "inductor"}
    made["shapes"] = [(2, 4, 8, 8)]
    note = kept_note(tmp_path, **made)
    assert note.parent == tmp_path and note == kept_note(tmp_path, **made)
    # Another model, dtype, backend, shape or order of shapes makes other graphs: a start finds no note for them.
    others: list[dict[str, Any]] = [
        {"model": "random-sdxl"},
        {"dtype": "bfloat16"},
        {"backend": "eager"},
        {"shapes": [(4, 4, 8, 8)]},
        {"shapes": [(2, 4, 8, 8), (2, 4, 8, 10)]},
    ]
    notes = {kept_note(tmp_path, **(made | other)) for other in others}
    assert note not in notes and len(notes) == len(others)
