"""Real parts for the pipeline tests: the tiny SDXL built once offline, its pipeline, and real photos of a face."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from PIL import Image, ImageEnhance, ImageOps

from bot.local.samples import astronaut_photo
from pipeline.diffusion.generation import GeneratedImage, generate_headshots
from pipeline.diffusion.sdxl_tiny import build_tiny_sdxl
from pipeline.diffusion.training.config import TrainingConfig
from pipeline.diffusion.training.loop import TrainingResult, train_lora
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.styles import STYLES

# Few steps and a high learning rate: enough for the tiny model to learn visibly in seconds on a CPU. 160 images in
# batches of 4 (the default) with Min-SNR weighting (the default): 40 optimizer steps.
TRAIN_CONFIG = TrainingConfig(rank=8, steps=160, learning_rate=5e-3, seed=7)
RENDER_STEPS = 3


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """A real photograph with a face (Eileen Collins, NASA), shipped inside scikit-image."""
    return astronaut_photo()


@pytest.fixture(scope="session")
def selfie_images(astronaut: Image.Image) -> list[Image.Image]:
    """Eight 'selfies' of one face: different crops around the head, mirrored and brighter or darker."""
    images = []
    for index in range(8):
        left, top = 60 + 12 * index, 8 * index
        crop = astronaut.crop((left, top, left + 300 - 10 * index, top + 300 - 10 * index))
        if index % 2:
            crop = ImageOps.mirror(crop)
        images.append(ImageEnhance.Brightness(crop).enhance(0.8 + 0.06 * index))
    return images


@pytest.fixture(scope="session")
def faces() -> FaceAnalyzer:
    """dlib's face models, loaded once for the session as a worker or bot process loads them."""
    return FaceAnalyzer()


@pytest.fixture(scope="session")
def other_person() -> Image.Image:
    """Someone else: the first face of scikit-image's LFW subset (25x25 px), enlarged to a 300 px photo."""
    import numpy as np
    from skimage import data

    face = (data.lfw_subset()[0] * 255).astype(np.uint8)  # type: ignore[no-untyped-call]
    return Image.fromarray(face).resize((300, 300), Image.Resampling.LANCZOS).convert("RGB")


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut: Image.Image) -> bytes:
    buffer = io.BytesIO()
    astronaut.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def model_cache_dir(model_cache: Path) -> Path:
    """The session's model cache with the tiny model built, as a worker's cache holds it after its first start."""
    build_tiny_sdxl(model_cache / "tiny-sdxl")
    return model_cache


@pytest.fixture
def capture_cuda_graph() -> Callable[[Callable[[], Any]], tuple[Any, Any, Any]]:
    """``capture(step)``: ``step``'s output from a first run on a side stream (its kernels compile outside any
    capture, as a worker warms up before capturing), a CUDA graph of a second run, and that run's output, which each
    ``graph.replay()`` rewrites. A GPU only."""
    import torch

    def capture(step: Callable[[], Any]) -> tuple[Any, Any, Any]:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            first = step().clone()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            replayed = step()
        return first, graph, replayed

    return capture


@pytest.fixture
def replays_new_inputs(
    capture_cuda_graph: Callable[[Callable[[], Any]], tuple[Any, Any, Any]],
) -> Callable[[Callable[[], Any], Callable[[], None]], None]:
    """``check(step, change)``: ``step`` captured in a CUDA graph, its inputs changed in place by ``change``, the graph
    replayed: its output must be what ``step`` computes from the new inputs, and not what it did from the old."""
    import torch

    def check(step: Callable[[], Any], change: Callable[[], None]) -> None:
        expected, graph, replayed = capture_cuda_graph(step)
        with torch.no_grad():
            change()
        graph.replay()
        torch.testing.assert_close(replayed, step())
        assert not torch.equal(replayed, expected)

    return check


@pytest.fixture
def triton_kernels(tmp_path: Path) -> Callable[[str, dict[str, int]], Any]:
    """``load(module, small_tiles)``: a ``KernelRunner`` of one of the project's Triton kernel modules, on a GPU or
    in Triton's interpreter (``tests.pipeline.triton_kernels`` says how); skipped on a CPU machine without triton."""
    from tests.pipeline.triton_kernels import KernelRunner

    def load(module: str, small_tiles: dict[str, int]) -> Any:
        try:
            return KernelRunner(module, small_tiles, tmp_path)
        except LookupError as missing:
            pytest.skip(str(missing))

    return load


@pytest.fixture
def h200_compile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> Callable[[str, list[tuple[str, tuple[Any, ...]]]], tuple[list[Any], dict[str, dict[str, int]]]]:
    """``compile(module, calls)``: the kernels ``module``'s host ``calls`` launch, compiled for the H200 on this machine
    (``bench.kernel_compile``), with ptxas's figures for each (registers, spills); skipped without triton."""
    pytest.importorskip("triton", reason="the Triton kernels need triton: `make test` installs it")
    from bench.kernel_compile import H200, compile_launches, ptxas_figures

    # ptxas's verbose log printed for each kernel, none taken from a cache unlogged.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    monkeypatch.setenv("TRITON_DUMP_PTXAS_LOG", "1")
    monkeypatch.setenv("TRITON_ALWAYS_COMPILE", "1")

    def compile_for_h200(
        module: str, calls: list[tuple[str, tuple[Any, ...]]]
    ) -> tuple[list[Any], dict[str, dict[str, int]]]:
        compiled = compile_launches(module, calls, H200)
        return compiled, ptxas_figures(capfd.readouterr().out, compiled)

    return compile_for_h200


@pytest.fixture
def tiny_lora_gradient(model_cache_dir: Path) -> tuple[Any, Callable[[], Any]]:
    """A fresh tiny UNet with a rank-4 LoRA on ``to_q`` and ``to_v`` (its B factors non-zero, so every layer's
    gradient flows), and a function returning the LoRA's gradient, flattened, of one call at fixed inputs: for
    setting an operator's training path against the maths it replaces."""
    import torch
    from peft import LoraConfig

    from pipeline.diffusion.loading import load_base_pipeline

    tiny = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache_dir)
    unet = tiny.unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_v"]))
    lora = [param for name, param in unet.named_parameters() if "lora_" in name]
    torch.manual_seed(2)
    for param in lora:
        torch.nn.init.normal_(param, std=0.05)
    generator = torch.Generator().manual_seed(3)
    config = unet.config
    inputs = {
        "sample": torch.randn(2, config.in_channels, 16, 16, generator=generator),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(2, 5, config.cross_attention_dim, generator=generator),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, tiny.text_encoder_2.config.projection_dim, generator=generator),
            "time_ids": torch.tensor([[128.0, 128.0, 0.0, 0.0, 128.0, 128.0]] * 2),
        },
    }

    def gradient() -> Any:
        for param in lora:
            param.grad = None
        unet(**inputs).sample.pow(2).mean().backward()
        return torch.cat([param.grad.flatten() for param in lora if param.grad is not None])

    return unet, gradient


@pytest.fixture(scope="session")
def pipe(model_cache_dir: Path, tiny_pipe: Any) -> Any:
    """The session's one tiny pipeline (the bot and jobs tests' workers use the same object)."""
    return tiny_pipe


@pytest.fixture(scope="session")
def base_headshots(pipe: Any) -> list[GeneratedImage]:
    """Base-model renders taken before any training, to compare against after LoRAs came and went."""
    return generate_headshots(pipe, STYLES["linkedin"], count=2, seed=100, steps=RENDER_STEPS)


def trained_once(tmp_path_factory: Any, worker_id: str, name: str, train: Callable[[Path], TrainingResult]) -> Any:
    """``train(folder)``'s result, trained by the first of the run's xdist workers that asks and read by the others
    (the same seed trains the same LoRA on any of them: training it twice cost CI most of a minute)."""
    if worker_id == "master":  # no xdist: nothing to share, and the parent folder outlives the run
        return train(tmp_path_factory.mktemp(name))
    folder = tmp_path_factory.getbasetemp().parent / name  # the run's folder, above every worker's own
    with FileLock(f"{folder}.lock"):
        if (folder / "result.pickle").exists():
            return pickle.loads((folder / "result.pickle").read_bytes())
        folder.mkdir()
        result = train(folder)
        (folder / "result.pickle").write_bytes(pickle.dumps(result))
    return result


@pytest.fixture(scope="session")
def trained(
    pipe: Any,
    selfie_images: list[Image.Image],
    base_headshots: list[GeneratedImage],
    tmp_path_factory: Any,
    worker_id: str,
) -> TrainingResult:
    """One LoRA trained on the selfies, shared by the tests that check what it does."""
    return trained_once(
        tmp_path_factory, worker_id, "lora", lambda folder: train_lora(pipe, selfie_images, TRAIN_CONFIG, folder)
    )


@pytest.fixture(scope="session")
def text_encoder_trained(pipe: Any, selfie_images: list[Image.Image], tmp_path_factory: Any) -> TrainingResult:
    """A LoRA on the UNet and both text encoders (the prompt is re-encoded, with gradients, every step)."""
    config = TrainingConfig(rank=4, steps=16, learning_rate=5e-3, seed=11, text_encoder_lora=True)
    return train_lora(pipe, selfie_images[:3], config, tmp_path_factory.mktemp("te-lora"))


@pytest.fixture(scope="session")
def second_lora(pipe: Any, selfie_images: list[Image.Image], tmp_path_factory: Any, worker_id: str) -> TrainingResult:
    """A different, lower-rank LoRA, for swapping between two users."""
    config = TrainingConfig(rank=4, steps=24, learning_rate=1e-2, seed=2)
    return trained_once(
        tmp_path_factory, worker_id, "lora-b", lambda folder: train_lora(pipe, selfie_images[4:], config, folder)
    )


@pytest.fixture(scope="session")
def flux2_pipe(model_cache: Path) -> Any:
    """The tiny FLUX.2 [klein] pipeline, built into the session's model cache and loaded as any klein folder is."""
    from pipeline.diffusion.loading import TINY_FLUX2_MODEL, load_base_pipeline

    return load_base_pipeline(TINY_FLUX2_MODEL, device="cpu", cache_dir=model_cache)


# A high rate, as for the tiny SDXL, so the tiny klein learns visibly in seconds: 96 images in batches of 4.
FLUX2_TRAIN_CONFIG = TrainingConfig(rank=8, steps=96, learning_rate=3e-2, seed=5)


@pytest.fixture(scope="session")
def flux2_trained(flux2_pipe: Any, selfie_images: list[Image.Image], tmp_path_factory: Any) -> TrainingResult:
    """One klein LoRA trained on the selfies, shared by the tests that check what it does."""
    return train_lora(flux2_pipe, selfie_images, FLUX2_TRAIN_CONFIG, tmp_path_factory.mktemp("flux2-lora"))
