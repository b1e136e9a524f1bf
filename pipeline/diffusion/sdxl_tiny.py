"""A tiny, randomly initialised SDXL checkpoint written to disk, so tests and demos run the real pipeline offline.

The folder has the same layout as ``stabilityai/stable-diffusion-xl-base-1.0`` (two CLIP text encoders, a
text-time conditioned UNet, a VAE, an Euler scheduler), so it goes through exactly the same ``from_pretrained``,
training and generation code; only the sizes are small (64x64 images, a few seconds on a CPU). The shapes follow
diffusers' own SDXL test components. Nothing is downloaded: even the tokenizer files are written here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.diffusion.tiny_build import build_once

__all__ = ["TINY_VERSION", "build_tiny_sdxl", "sdxl_scheduler", "write_tokenizer_files"]

# Bumped whenever the architecture below changes, so an old cached build is rebuilt rather than reused.
TINY_VERSION = 3
_MARKER = "tiny-sdxl.json"

# Words that get whole-word BPE merges, so the style prompts fit CLIP's 77 tokens as they do on the real model
# (other text still tokenizes, one byte per token). Changing this list changes the model: bump TINY_VERSION.
_WORDS = """
    a actor and artistic asymmetric backdrop background behind black blazer blurry bokeh business cafe camera candid
    cartoon casual city classic colour colourful composition confident corporate creative crisp cropped dark daylight
    deformed depth design detail dramatic editorial end even executive expression extra eyes face field film fine
    fingers focus friendly gel golden grain green grey head headshot high hour in into jacket key knit lens life
    light lighting linkedin logo look looking lowres magazine mm modern natural neutral of office on outdoor outfit
    oversaturated painting park person photo photograph plain point portrait professional quality relaxed retouching
    rim seamless shallow sharp side skin sks smile soft softbox straight studio stylish suit sweater text texture the
    theatrical three timeless to trees true warm watermark white window with
    bookshelf shirt smart street turtleneck
    woman man her his their twenties thirties forties fifties sixties seventies wearing glasses
"""
_MERGED_WORDS = tuple(_WORDS.split())


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's map from each byte to a printable character, which byte-level BPE vocabularies are built on."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def write_tokenizer_files(directory: Path) -> int:
    """Write a byte-level CLIP ``vocab.json`` and ``merges.txt``; return the vocabulary size.

    Every byte is a token with and without the ``</w>`` end-of-word suffix, so any text tokenizes. Each word of
    ``_MERGED_WORDS`` is first split by the merges learnt so far, then its pieces are joined left to right by new,
    lower-priority merges: the same order BPE applies them in, so every listed word ends as one token.
    """
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in symbols + [symbol + "</w>" for symbol in symbols]:
        vocab[token] = len(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for word in _MERGED_WORDS:
        pieces = _apply_bpe([*word[:-1], word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(ranks)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1], *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    merges = "\n".join(f"{left} {right}" for left, right in ranks)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + merges + "\n", encoding="utf-8")
    return len(vocab)


def _apply_bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Standard BPE: repeatedly join the adjacent pair with the lowest merge rank."""
    while len(pieces) > 1:
        pairs = [
            (ranks.get(pair, len(ranks)), index) for index, pair in enumerate(zip(pieces[:-1], pieces[1:], strict=True))
        ]
        rank, index = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:index], pieces[index] + pieces[index + 1], *pieces[index + 2 :]]
    return pieces


def _build(target: Path, seed: int) -> None:
    """Create every component with seeded random weights and ``save_pretrained`` the pipeline into ``target``."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    # 1. Tokenizers: written as files, then loaded the way a real checkpoint's tokenizer is.
    token_dir = target.parent / (target.name + "-tokenizer-src")
    vocab_size = write_tokenizer_files(token_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(token_dir), model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(token_dir), model_max_length=77)
    shutil.rmtree(token_dir)

    # 2. Models, each seeded separately so changing one does not reshuffle the others.
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # SDXL's added condition: 6 time ids embedded to 8 each, plus the pooled text embedding (32).
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    text_config = CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        hidden_act="gelu",
        projection_dim=32,
        vocab_size=vocab_size,
        max_position_embeddings=77,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)

    scheduler = sdxl_scheduler()

    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(str(target), safe_serialization=True)  # type: ignore[attr-defined]


def sdxl_scheduler() -> Any:
    """SDXL base's own scheduler settings (Euler, scaled-linear betas, 'leading' spacing)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def build_tiny_sdxl(directory: Path, *, seed: int = 0) -> Path:
    """Write the tiny SDXL checkpoint into ``directory`` (or reuse a finished one) and return ``directory``."""
    return build_once(directory, {"seed": seed, "version": TINY_VERSION}, _MARKER, lambda target: _build(target, seed))
