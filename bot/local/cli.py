"""``headshot-local``: chat with the bot in this terminal, with a private Redis and a worker started for you."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from bot.app import BotApp
from bot.local.chat import LocalChat
from bot.local.port import LocalChatPort
from bot.local.runtime import local_runtime
from jobs.settings import Settings

__all__ = ["main", "settings_from_args"]

BANNER = """Local headshot chat. Type /help for commands; a file or folder path attaches selfies;
'react N' marks headshot #N as a favorite; 'quit' (or Ctrl-D) leaves. Worker log: {log}"""


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command line's choices on top."""
    settings = Settings()
    updates: dict[str, object] = {}
    if args.model:
        updates["model"] = args.model
    if args.data_dir:
        updates["data_dir"] = Path(args.data_dir)
    return settings.model_copy(update=updates)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="diffusers SDXL or FLUX.2 [klein] checkpoint (hub id or folder), 'tiny' or 'tiny-flux2' "
        "(default: tiny here)",
    )
    parser.add_argument("--data-dir", help="where the SQLite file, storage and models go (default: ./data)")
    parser.add_argument(
        "--out", default="headshots", help="folder for the headshots you receive (default: ./headshots)"
    )


async def _chat(settings: Settings, redis_url: str, out: Path, log_path: Path) -> None:
    port = LocalChatPort(out)
    async with BotApp(settings, redis_url) as app:
        app.start_delivery({port.platform: port})
        chat = LocalChat(app.service, port)
        print(BANNER.format(log=log_path))
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip().lower() in ("quit", "exit"):
                return
            if line.strip():
                await chat.say(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headshot-local", description=__doc__)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if not args.model and "HEADSHOT_MODEL" not in os.environ:
        args.model = "tiny"  # the local chat is the no-GPU path unless a model is named
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    with local_runtime(settings) as runtime:
        asyncio.run(_chat(settings, runtime.redis_url, Path(args.out), runtime.worker_log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
