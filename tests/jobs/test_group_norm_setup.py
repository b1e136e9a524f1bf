"""Which of a GPU worker's group norms run ``headshot::group_norm`` with gradients off (``use_group_norm_operators``,
called by ``prepare_model`` on CUDA before any compile): the VAE's always, the UNet's with render graphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from jobs.worker.model_setup import use_group_norm_operators
from pipeline.diffusion.group_norm import NoGradGroupNorm, OneOperatorGroupNorm
from pipeline.diffusion.loading import load_base_pipeline


def _norms(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, nn.GroupNorm)]


def test_the_vaes_norms_always_and_the_unets_with_render_graphs(
    model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = load_base_pipeline("tiny", device="cpu", cache_dir=model_cache)
    with caplog.at_level("INFO", logger="jobs.worker.model_setup"):
        use_group_norm_operators(pipe, render_graphs=False)
    encoder, decoder = _norms(pipe.vae.encoder), _norms(pipe.vae.decoder)
    assert encoder and decoder and all(type(norm) is NoGradGroupNorm for norm in [*encoder, *decoder])
    # The UNet's render calls, launched from Python, keep torch's norms.
    assert not any(isinstance(norm, OneOperatorGroupNorm) for norm in _norms(pipe.unet))
    assert f"{len(encoder)} of the VAE encoder's, {len(decoder)} of its decoder's, 0 of the UNet's" in caplog.text

    use_group_norm_operators(pipe, render_graphs=True)
    assert all(type(norm) is NoGradGroupNorm for norm in _norms(pipe.unet))
