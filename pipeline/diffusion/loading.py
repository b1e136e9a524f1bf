"""Loading the base model once per worker: its family, device and dtype, the tiny offline models, clear failures.

The worker calls ``load_base_pipeline`` in its startup hook and shares the pipeline between jobs; training and
generation attach a user's LoRA only for the length of one call and remove it afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.diffusion.families import Family, checkpoint_family
from pipeline.diffusion.flux2_tiny import build_tiny_flux2
from pipeline.diffusion.sdxl_tiny import build_tiny_sdxl
from pipeline.errors import ModelLoadError

__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "RANDOM_SDXL_MODEL",
    "TINY_FLUX2_BASE_MODEL",
    "TINY_FLUX2_MODEL",
    "TINY_MODEL",
    "load_base_pipeline",
    "load_vae",
    "device_name",
    "gpu_memory_gib",
    "pick_device",
    "weight_dtypes",
]

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
# The name that selects the randomly initialised offline model (tests, demos, CI).
TINY_MODEL = "tiny"
# The same for the FLUX.2 [klein] family.
TINY_FLUX2_MODEL = "tiny-flux2"
# Its undistilled twin (klein-base's role: the model LoRAs train on), other random weights, CFG and many steps.
TINY_FLUX2_BASE_MODEL = "tiny-flux2-base"
# SDXL base's exact architecture with seeded random weights, built on the device: benchmarks on machines with no hub.
RANDOM_SDXL_MODEL = "random-sdxl"
DTYPES = ("float16", "bfloat16", "float32")


def pick_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    """The GPU's name for a CUDA ``device`` ("NVIDIA H100 80GB HBM3"), else "cpu": compiled kernels fit only the GPU
    they were built on, so what names them says which."""
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def gpu_memory_gib(device: Any) -> float | None:
    """The memory of the GPU ``device`` names (a ``torch.device`` or "cuda:1"), in GiB; None off CUDA."""
    import torch

    device = torch.device(device)
    return torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None


def _resolve_dtype(dtype: str | None, device: str) -> Any:
    import torch

    if dtype is None:
        # bfloat16 keeps SDXL's VAE and attention in range without fp16's overflow fixes; CPUs want float32.
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, but is {dtype!r}.")
    return getattr(torch, dtype)


def load_base_pipeline(
    model: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    cache_dir: Path,
) -> Any:
    """Load ``model`` on ``device``, progress bar off, as the pipeline its ``model_index.json`` names.

    ``model`` is ``"tiny"``, ``"tiny-flux2"`` or ``"tiny-flux2-base"`` (built into ``cache_dir`` on first use),
    ``"random-sdxl"``
    (benchmarks only: SDXL's shapes, random weights), a local checkpoint folder, or a model hub id (downloaded into
    ``cache_dir``) of SDXL or FLUX.2 [klein]. Raises ``ModelLoadError`` saying what to set instead.
    """
    from diffusers import Flux2KleinPipeline, StableDiffusionXLPipeline

    # 1. Check inputs.
    device = device or pick_device()
    torch_dtype = _resolve_dtype(dtype, device)
    cache_dir = Path(cache_dir)
    if model == RANDOM_SDXL_MODEL:
        from pipeline.diffusion.sdxl_config import build_random_sdxl

        return build_random_sdxl(device=device, dtype=str(torch_dtype).removeprefix("torch."))

    # 2. Find the checkpoint: the tiny model is built locally and then loaded like any other folder.
    source, local = _checkpoint_source(model, cache_dir)

    # 3. The family comes from the checkpoint, so a klein hub id or folder needs no setting of its own.
    family, _ = checkpoint_family(source, cache_dir=cache_dir, local=local)
    pipeline_class = Flux2KleinPipeline if family is Family.FLUX2 else StableDiffusionXLPipeline

    # 4. Load. A local folder never touches the hub, so an offline machine fails fast instead of retrying.
    try:
        pipe = pipeline_class.from_pretrained(
            source,
            dtype=torch_dtype,
            cache_dir=str(cache_dir),
            local_files_only=local,
        )
    except Exception as error:  # Every cause (hub, files, config) becomes one actionable error.
        raise ModelLoadError(_explain_failure(model, local, error)) from error

    # 5. Place it. SDXL base's VAE overflows in float16; its config has force_upcast, which the pipeline honours
    #    by decoding in float32, and training does the same when it encodes (see pipeline.diffusion.training.loop).
    try:
        pipe.to(device)
    except (RuntimeError, AssertionError) as error:
        raise ModelLoadError(f"Model '{model}' loaded but could not be moved to device '{device}': {error}") from error
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_vae(model: str, *, device: str, dtype: str, cache_dir: Path) -> Any:
    """``model``'s VAE alone, as ``load_base_pipeline`` loads it in its pipeline (``model`` and ``cache_dir`` the
    same), on ``device`` in ``dtype`` ("bfloat16", ...): what a process that compiles only the decoder needs
    (``pipeline.diffusion.decoder_compile``). Raises ``ModelLoadError`` as ``load_base_pipeline`` does."""
    import torch
    from diffusers import AutoModel

    torch_dtype = _resolve_dtype(dtype, device)
    if model == RANDOM_SDXL_MODEL:
        from diffusers import AutoencoderKL

        from pipeline.diffusion.sdxl_config import SDXL_VAE_CONFIG

        with torch.device(device):
            vae: Any = AutoencoderKL(**SDXL_VAE_CONFIG)
        return vae.to(device, torch_dtype).eval()  # as ``build_random_sdxl`` leaves it
    source, local = _checkpoint_source(model, Path(cache_dir))
    try:
        vae = AutoModel.from_pretrained(
            source, subfolder="vae", dtype=torch_dtype, cache_dir=str(cache_dir), local_files_only=local
        )
    except Exception as error:  # Every cause (hub, files, config) becomes one actionable error.
        raise ModelLoadError(_explain_failure(model, local, error)) from error
    return vae.to(device)


def _checkpoint_source(model: str, cache_dir: Path) -> tuple[str, bool]:
    """The folder or hub id ``model`` loads from, and whether it is a local folder; builds a tiny model on first
    use."""
    if model == TINY_MODEL:
        source = str(build_tiny_sdxl(cache_dir / "tiny-sdxl"))
    elif model == TINY_FLUX2_MODEL:
        source = str(build_tiny_flux2(cache_dir / "tiny-flux2"))
    elif model == TINY_FLUX2_BASE_MODEL:
        source = str(build_tiny_flux2(cache_dir / "tiny-flux2-base", seed=1, distilled=False))
    else:
        source = model
    local = Path(source).expanduser().is_dir()
    return (str(Path(source).expanduser()) if local else source), local


def weight_dtypes(pipe: Any) -> dict[str, set[Any]]:
    """The dtypes of each pipeline component's weights, the training slot's float32 LoRA aside: what a worker loaded
    its model in, and must still render in after its start-up."""
    from pipeline.diffusion.training.slot import TRAINING_ADAPTER

    return {
        name: {param.dtype for key, param in part.named_parameters() if TRAINING_ADAPTER not in key}
        for name, part in pipe.components.items()
        if hasattr(part, "named_parameters")
    }


def _explain_failure(model: str, local: bool, error: Exception) -> str:
    if local:
        return (
            f"Could not load the model folder '{model}' ({type(error).__name__}: {error}). "
            "Check that it is a complete diffusers SDXL or FLUX.2 [klein] checkpoint, or set HEADSHOT_MODEL to 'tiny' "
            "for a test model."
        )
    return (
        f"Could not load model '{model}': it is not a local folder and the model hub could not be reached or has "
        f"no such SDXL or FLUX.2 [klein] checkpoint ({type(error).__name__}). "
        "Set HEADSHOT_MODEL to a local checkpoint folder or to 'tiny'."
    )
