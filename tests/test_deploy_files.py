"""The deployment files stay true to the code: .env.example lists every setting, the compose file is valid Compose,
names only files that exist, keeps Redis durable and the worker on a GPU, and the images run as non-root.

No Docker engine is needed: the compose file is checked against the official compose-spec JSON schema (the copy
that the check-jsonschema package ships, so no network at test time) and the Dockerfiles are read as text.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import AliasChoices

from jobs.settings import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _env_example_names() -> set[str]:
    """Names set or shown (commented) in .env.example: `NAME=value` or `# NAME=value`."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return set(pattern.findall(ENV_EXAMPLE.read_text()))


def _env_names(name: str, alias: object) -> set[str]:
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    if isinstance(alias, str):
        return {alias}
    return {f"HEADSHOT_{name.upper()}"}


def _stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def _instructions(dockerfile: Path, instruction: str) -> list[str]:
    return [arguments for stage in _stages(dockerfile) for name, arguments in stage if name == instruction]


def _dockerfiles() -> list[Path]:
    return [ROOT / service["build"]["dockerfile"] for service in _compose()["services"].values() if "build" in service]


# 1. .env.example is complete.


def test_env_example_names_every_settings_field() -> None:
    # A field added to jobs/settings.py must be added to .env.example too, with its default and a comment.
    listed = _env_example_names()
    missing = [
        f"{name} (as {' or '.join(sorted(_env_names(name, field.validation_alias)))})"
        for name, field in Settings.model_fields.items()
        if not _env_names(name, field.validation_alias) & listed
    ]
    assert not missing, f"add these settings to .env.example: {', '.join(missing)}"


def test_env_example_copied_as_is_gives_the_default_settings(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("TELEGRAM_TOKEN=\n", "TELEGRAM_TOKEN=123:abc\n"))
    from_example = Settings(_env_file=env_file)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    # The blank DISCORD_TOKEN= line leaves Discord off instead of starting it with an empty token.
    assert from_example.discord_token is None
    assert from_example.telegram_token is not None
    assert from_example.telegram_token.get_secret_value() == "123:abc"
    differing = {
        name: (getattr(from_example, name), getattr(defaults, name))
        for name in Settings.model_fields
        if name != "telegram_token" and getattr(from_example, name) != getattr(defaults, name)
    }
    assert not differing, f".env.example sets values other than the defaults (example, default): {differing}"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    environment = {name for service in _compose()["services"].values() for name in service.get("environment", {}) or {}}
    headshot_env = {name for name in environment if name.startswith("HEADSHOT_") or name == "REDIS_URL"}
    undocumented = sorted((used | headshot_env) - _env_example_names())
    assert not undocumented, f"document these in .env.example: {undocumented}"


# 2. The compose file is valid Compose.


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    schema_file = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(schema_file.read_text())
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    errors = list(validator_class(schema).iter_errors(_compose()))
    assert not errors, "\n".join(f"{'/'.join(map(str, error.path))}: {error.message}" for error in errors)


# 3. What the services rely on is there.


def test_compose_builds_from_dockerfiles_that_exist() -> None:
    services = _compose()["services"]
    assert {"redis", "bot", "worker"} <= services.keys()
    for name in ("bot", "worker"):
        build = services[name]["build"]
        dockerfile = ROOT / build.get("context", ".") / build["dockerfile"]
        assert dockerfile.is_file(), f"service {name} builds from {dockerfile}, which does not exist"


def test_compose_env_files_exist_or_have_a_template() -> None:
    for name, service in _compose()["services"].items():
        for entry in service.get("env_file", []):
            path = ROOT / (entry["path"] if isinstance(entry, dict) else entry)
            template = path.with_name(path.name + ".example")
            assert path.is_file() or template.is_file(), f"service {name} reads {path}; neither it nor {template}"


def test_worker_reserves_one_nvidia_gpu() -> None:
    worker = _compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    (device,) = devices
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device.get("count") == 1 or len(device.get("device_ids", [])) == 1
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == "0"


def test_redis_persists_the_queue_and_events_append_only() -> None:
    command = [str(part) for part in _compose()["services"]["redis"]["command"]]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert any(volume.endswith(":/data") for volume in _compose()["services"]["redis"]["volumes"])


def test_every_service_runs_a_healthcheck() -> None:
    for name, service in _compose()["services"].items():
        check = service.get("healthcheck", {})
        assert not check.get("disable") and check.get("test") not in (None, ["NONE"]), f"{name} has no healthcheck"


def test_s3_store_stays_behind_its_profile() -> None:
    services = _compose()["services"]
    assert services["minio"]["profiles"] == ["s3"]
    assert services["minio-bucket"]["profiles"] == ["s3"]
    for name in ("bot", "worker"):
        assert services[name]["depends_on"]["minio-bucket"]["required"] is False  # plain `up` runs without MinIO


# 4. The images.


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda path: path.name)
def test_runtime_stage_runs_as_non_root(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    assert len(stages) >= 2, f"{dockerfile.name} should build in one stage and run in another"
    users = [arguments for instruction, arguments in stages[-1] if instruction == "USER"]
    assert users, f"the runtime stage of {dockerfile.name} sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{dockerfile.name} runs as {users[-1]}"


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda path: path.name)
def test_build_context_lets_through_what_the_dockerfile_copies(dockerfile: Path) -> None:
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    copies = [arguments.split() for arguments in _instructions(dockerfile, "COPY") if "--from" not in arguments]
    sources = {source.rstrip("/") for parts in copies for source in parts[:-1]}
    assert sources, f"{dockerfile.name} copies nothing from the context"
    assert sources <= allowed, f".dockerignore keeps {sorted(sources - allowed)} out, but {dockerfile.name} copies it"


def test_bot_image_installs_no_torch() -> None:
    runs = _instructions(ROOT / "docker" / "bot.Dockerfile", "RUN")
    installs = [run for run in runs if "pip install" in run or "pip wheel" in run]
    assert installs, "bot.Dockerfile installs nothing"
    assert not [run for run in installs if "[worker]" in run or "torch" in run], "the bot image must stay torch-free"
