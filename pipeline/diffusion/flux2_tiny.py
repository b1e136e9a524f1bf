"""A tiny, randomly initialised FLUX.2 [klein] checkpoint written to disk, so tests and demos run klein offline.

The folder has the layout of ``black-forest-labs/FLUX.2-klein-4B`` (a Qwen3 text encoder and its byte-level BPE
tokenizer with a chat template, a ``Flux2Transformer2DModel``, the FLUX.2 VAE with its latent batch norm, a
flow-matching Euler scheduler, ``is_distilled``), so it loads through the same ``from_pretrained`` as the real one;
only the sizes are small (64x64 images). The text encoder keeps 28 layers because the pipeline reads hidden states
9, 18 and 27, as it does on Qwen3-4B; they are 16 wide, so they cost nothing. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.diffusion.sdxl_tiny import _MERGED_WORDS
from pipeline.diffusion.tiny_build import build_once
from pipeline.styles import STYLES

__all__ = ["TINY_FLUX2_VERSION", "build_tiny_flux2", "flux2_scheduler", "qwen_tokenizer"]

# Bumped whenever the architecture below changes, so an old cached build is rebuilt rather than reused.
TINY_FLUX2_VERSION = 3
_MARKER = "tiny-flux2.json"
_TEXT_LAYERS = 28
_TEXT_WIDTH = 16
_PROMPT_TOKENS = 96

# Qwen's chat markup, reduced to what the klein pipeline asks of it: a user turn, then the assistant's turn opened.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE ``Qwen2Tokenizer`` (tokenizers-backed) learnt from the styles' sentences, with Qwen's
    special tokens and chat template.

    Every byte is in the vocabulary, so any text tokenizes; training on the same text gives the same merges, so the
    tokenizer (and the model built with it) is the same on every machine.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(_MERGED_WORDS), *(style.render_sentence() for style in STYLES.values())]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return Qwen2Tokenizer(
        tokenizer_object=tokenizer,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        bos_token=None,
        chat_template=_CHAT_TEMPLATE,
        # The chat-wrapped style prompts fit; ``flux2_rendering.prompt_length`` pads to this instead of klein's 512.
        model_max_length=_PROMPT_TOKENS,
    )


def flux2_scheduler() -> Any:
    """FLUX.2 [klein]'s scheduler settings: flow-matching Euler with resolution-dependent (dynamic) shifting."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        time_shift_type="exponential",
    )


def _build(target: Path, seed: int, distilled: bool) -> None:
    """Create every component with seeded random weights and ``save_pretrained`` the pipeline into ``target``."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    # 1. Tokenizer, learnt here; saved with the pipeline as tokenizer.json and its config.
    tokenizer = qwen_tokenizer()

    # 2. Models, each seeded separately so changing one does not reshuffle the others.
    torch.manual_seed(seed)
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=_TEXT_WIDTH,
            intermediate_size=32,
            num_hidden_layers=_TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLFlux2(
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,  # the side generation and training take as the model's own size
    )
    torch.manual_seed(seed + 2)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4 * 4,  # the VAE's 4 latent channels in 2x2 patches
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * _TEXT_WIDTH,  # three hidden-state layers of the text encoder, concatenated
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )

    pipe = Flux2KleinPipeline(
        scheduler=flux2_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=distilled,
    )
    pipe.save_pretrained(str(target), safe_serialization=True)  # type: ignore[attr-defined]


def build_tiny_flux2(directory: Path, *, seed: int = 0, distilled: bool = True) -> Path:
    """Write the tiny klein checkpoint into ``directory`` (or reuse a finished one) and return ``directory``.

    ``distilled`` False writes the base model's twin, as black-forest-labs publishes one of each (the same
    architecture; the base renders with CFG and many steps, and is the one LoRAs are trained on)."""
    expected = {"seed": seed, "version": TINY_FLUX2_VERSION, "distilled": distilled}
    return build_once(directory, expected, _MARKER, lambda target: _build(target, seed, distilled))
