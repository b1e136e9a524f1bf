"""The pipeline tests' fixtures (tiny pipeline, selfies, trained LoRAs), for tests of bench/ tools built on them."""

from tests.pipeline.conftest import (  # noqa: F401
    astronaut,
    base_headshots,
    h200_compile,
    model_cache_dir,
    pipe,
    selfie_images,
    text_encoder_trained,
    trained,
    triton_kernels,
)
