"""Settings fail fast and hide tokens; the bot process never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.settings import CompileProfile, Settings


def test_tokens_are_masked_in_repr_and_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "123456:SECRET-telegram")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == "123456:SECRET-telegram"
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings.model_dump())


def test_bad_setting_names_the_value() -> None:
    with pytest.raises(ValidationError, match=r"max_selfies \(5\) must be at least min_selfies \(10\)"):
        Settings(_env_file=None, min_selfies=10, max_selfies=5)  # type: ignore[call-arg]


def test_the_bots_consumer_name_is_stable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.app import BotApp

    # Not the hostname, which a recreated container changes: the same name after every restart.
    assert BotApp(Settings(_env_file=None), "redis://unused").consumer_name == "bot"  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_BOT_CONSUMER", "bot-eu 1")
    with pytest.raises(ValidationError, match="bot_consumer") as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert "bot-eu 1" in str(refused.value)


def test_fp8_rendering_without_compiling_is_refused_with_both_settings_named() -> None:
    with pytest.raises(ValidationError, match="HEADSHOT_RENDER_FLOAT8=true needs HEADSHOT_COMPILE_UNET=true"):
        Settings(_env_file=None, render_float8=True, compile_unet=False)  # type: ignore[call-arg]
    assert Settings(_env_file=None, render_float8=True, compile_unet=True).render_float8  # type: ignore[call-arg]
    # Left unset, compiling is judged as it resolves: on for a CUDA worker, off for a CPU one.
    assert Settings(_env_file=None, render_float8=True).compile_profile("cuda:0").unet  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"COMPILE_UNET=true \(unset, it is off for a cpu worker\)"):
        Settings(_env_file=None, render_float8=True, device="cpu")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="off for a cpu worker"):
        Settings(_env_file=None, render_float8=True).compile_profile("cpu")  # type: ignore[call-arg]


def test_block_compiled_training_without_compiled_rendering_is_refused_with_the_settings_named() -> None:
    # The blocks are shared: unwarmed for rendering, a user's first request would compile them.
    message = "HEADSHOT_COMPILE_SCOPE=blocks with HEADSHOT_COMPILE_TRAINING=true needs HEADSHOT_COMPILE_UNET=true"
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, compile_scope="blocks", compile_training=True, compile_unet=False)  # type: ignore[call-arg]
    both = Settings(_env_file=None, compile_scope="blocks", compile_training=True, compile_unet=True)  # type: ignore[call-arg]
    assert both.compile_scope == "blocks"
    with pytest.raises(ValidationError, match="compile_scope"):
        Settings(_env_file=None, compile_scope="layers")  # type: ignore[call-arg]


def test_a_gpu_worker_compiles_by_default_a_cpu_one_stays_eager_and_explicit_values_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    # Unset, rendering's CUDA graphs are the worker's to decide on its GPU (None), never on a CPU.
    gpu = CompileProfile(unet=True, training=True, scope="blocks", cuda_graphs=None)
    assert defaults.compile_profile("cuda") == gpu
    assert defaults.compile_profile("cuda:1") == gpu
    assert defaults.compile_profile("cpu") == CompileProfile(unet=False, training=False, scope="unet")
    # The environment names are unchanged, and an explicit false is honoured on a GPU; the scope then follows.
    monkeypatch.setenv("HEADSHOT_COMPILE_TRAINING", "false")
    rendering_only = Settings(_env_file=None)  # type: ignore[call-arg]
    assert rendering_only.compile_profile("cuda") == CompileProfile(
        unet=True, training=False, scope="unet", cuda_graphs=None
    )
    monkeypatch.setenv("HEADSHOT_COMPILE_UNET", "true")
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "blocks")
    on_cpu = Settings(_env_file=None)  # type: ignore[call-arg]
    assert on_cpu.compile_profile("cpu") == CompileProfile(unet=True, training=False, scope="blocks")
    # CUDA graphs are captured by a compiled GPU worker's warm-up: asked for elsewhere, the setting is refused.
    monkeypatch.setenv("HEADSHOT_RENDER_CUDA_GRAPHS", "true")
    assert Settings(_env_file=None).compile_profile("cuda").cuda_graphs  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="HEADSHOT_RENDER_CUDA_GRAPHS=true needs HEADSHOT_COMPILE_UNET=true on a CUDA"):
        Settings(_env_file=None).compile_profile("cpu")  # type: ignore[call-arg]
    # Training's graphs belong to a compiled GPU worker's training slot: refused without compiled training.
    # The render glue compiles only to be replayed, by blocks: refused where it would be launched from Python.
    monkeypatch.setenv("HEADSHOT_COMPILE_RENDER_GLUE", "true")
    assert Settings(_env_file=None).compile_profile("cuda").render_glue  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_RENDER_CUDA_GRAPHS", "false")
    with pytest.raises(ValueError, match="COMPILE_RENDER_GLUE=true needs .* but HEADSHOT_RENDER_CUDA_GRAPHS=false"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("HEADSHOT_RENDER_CUDA_GRAPHS")
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "unet")
    with pytest.raises(ValueError, match="COMPILE_RENDER_GLUE=true needs .* but the scope 'unet'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("HEADSHOT_COMPILE_RENDER_GLUE")
    # The fused ResNet blocks stay outside any compiled glue: of the scopes, only 'blocks' compiles none.
    monkeypatch.setenv("HEADSHOT_RENDER_FUSED_RESNETS", "true")
    with pytest.raises(ValueError, match="HEADSHOT_RENDER_FUSED_RESNETS=true needs the scope 'blocks' .* 'unet'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "blocks")
    assert Settings(_env_file=None).render_fused_resnets  # type: ignore[call-arg]
    # Their kernels take either layout: the UNet's stays the worker's to decide (None), or the setting's.
    assert Settings(_env_file=None).compile_profile("cuda").channels_last is None  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_UNET_CHANNELS_LAST", "false")
    assert Settings(_env_file=None).compile_profile("cuda").channels_last is False  # type: ignore[call-arg]
    monkeypatch.delenv("HEADSHOT_UNET_CHANNELS_LAST")
    monkeypatch.delenv("HEADSHOT_RENDER_FUSED_RESNETS")
    # The sub-pixel samplers stay outside any compiled glue too.
    monkeypatch.setenv("HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS", "true")
    assert Settings(_env_file=None).render_subpixel_upsamplers  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "regions")
    with pytest.raises(ValueError, match="SUBPIXEL_UPSAMPLERS=true needs the scope 'blocks' .* the scope 'regions'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "blocks")
    monkeypatch.delenv("HEADSHOT_RENDER_SUBPIXEL_UPSAMPLERS")
    monkeypatch.setenv("HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS", "true")
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "regions")
    monkeypatch.setenv("HEADSHOT_COMPILE_TRAINING", "true")
    with pytest.raises(ValueError, match="TRAIN_SUBPIXEL_UPSAMPLERS=true needs the scope 'blocks' .* 'regions'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "blocks")
    assert Settings(_env_file=None).train_subpixel_upsamplers  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_TRAINING", "false")  # as set above
    monkeypatch.delenv("HEADSHOT_TRAIN_SUBPIXEL_UPSAMPLERS")
    # FP8 convolutions calibrate with the FP8 linears, and the feed-forwards' gated entry multiplies them: each refused
    # with FP8 rendering turned off.
    for name, field in (
        ("HEADSHOT_RENDER_FLOAT8_CONVS", "render_float8_convs"),
        ("HEADSHOT_RENDER_FUSED_GEGLU", "render_fused_geglu"),
    ):
        monkeypatch.setenv(name, "true")
        monkeypatch.setenv("HEADSHOT_RENDER_FLOAT8", "false")
        with pytest.raises(ValueError, match=f"{name}=true needs FP8 rendering, but"):
            Settings(_env_file=None)  # type: ignore[call-arg]
        monkeypatch.delenv("HEADSHOT_RENDER_FLOAT8")
        assert getattr(Settings(_env_file=None), field)  # type: ignore[call-arg]
        monkeypatch.delenv(name)
    # Training's too, where training compiles; eager training takes them whatever the scope.
    monkeypatch.setenv("HEADSHOT_TRAIN_FUSED_RESNETS", "true")
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "regions")
    assert Settings(_env_file=None).train_fused_resnets  # type: ignore[call-arg]  (training eager, set above)
    monkeypatch.setenv("HEADSHOT_COMPILE_TRAINING", "true")
    with pytest.raises(ValueError, match="HEADSHOT_TRAIN_FUSED_RESNETS=true needs the scope 'blocks' .* 'regions'"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("HEADSHOT_COMPILE_TRAINING", "false")
    monkeypatch.setenv("HEADSHOT_COMPILE_SCOPE", "blocks")
    monkeypatch.delenv("HEADSHOT_TRAIN_FUSED_RESNETS")
    monkeypatch.setenv("HEADSHOT_TRAIN_CUDA_GRAPHS", "true")
    with pytest.raises(ValueError, match="HEADSHOT_TRAIN_CUDA_GRAPHS=true needs HEADSHOT_COMPILE_TRAINING=true on a"):
        Settings(_env_file=None)  # type: ignore[call-arg]  (compiled training is set false above)
    monkeypatch.delenv("HEADSHOT_COMPILE_TRAINING")
    assert Settings(_env_file=None).compile_profile("cuda").training  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"COMPILE_TRAINING=true on a CUDA worker \(unset, it is off for a cpu"):
        Settings(_env_file=None).compile_profile("cpu")  # type: ignore[call-arg]


def test_bot_side_imports_no_torch() -> None:
    code = (
        "import sys, bot.app, bot.main, bot.local.demo, bot.local.cli, bot.telegram, bot.discord, "
        "jobs.contract.queue, jobs.worker.app; "
        "heavy = ('torch', 'diffusers', 'transformers', 'peft', 'nudenet', 'onnxruntime'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_imports_itself_back() -> None:
    # import-linter (`make lint`) keeps the rooms' layers; a cycle between two modules inside one room is ours to see.
    import graphlib

    import grimp

    graph = grimp.build_graph("bench", "bot", "jobs", "pipeline")
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_warm_aspects_names_an_unknown_shape_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match="warm_aspects names wide; use a comma-separated list of: square, profile"):
        Settings(_env_file=None, warm_aspects="profile, wide")  # type: ignore[call-arg]
    settings = Settings(_env_file=None, warm_aspects=" portrait ,square")  # type: ignore[call-arg]
    assert settings.warm_aspect_ratios == [(2, 3), (1, 1)]
