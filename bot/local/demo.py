"""``headshot-demo`` (``make demo``): the whole product end to end on this machine, scripted.

A private Redis, a worker process with the tiny offline model, the bot core and the local chat: ``/train`` with ten
selfies made from a real photo (and one bad file, to show a refusal), training progress, the first LinkedIn
headshots that come unasked, variations, a remix and an upscale of headshot #1, a favorite, ``/favorites``. It prints
where the headshots and the contact sheet are.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from pathlib import Path

from bot.app import BotApp
from bot.core.session import SessionState
from bot.local.chat import LocalChat
from bot.local.port import LocalChatPort
from bot.local.runtime import LocalRuntime, local_runtime
from bot.local.samples import make_sample_selfies
from jobs.settings import Settings

__all__ = ["main", "run_demo"]


async def _wait_for(app: BotApp, chat: LocalChat, runtime: LocalRuntime, state: SessionState, timeout_s: float) -> None:
    """Wait until the user's session reaches ``state``; fail with the worker's log when the worker died.

    Reads under the user's lock, as the bot's handlers do: delivery makes a trained session READY and then queues
    its first headshots, under that lock, so a read between the two would take the training's end for the last.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with app.core.locks.hold(chat.chat.user_key):
            session = await app.store.current_session(chat.chat.user_key)
            active = await app.store.active_job(chat.chat.user_key)
        if session is not None and session.state == state and active is None:
            return
        if runtime.worker.poll() is not None:
            tail = runtime.worker_log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the worker exited (code {runtime.worker.returncode}); its log ends:\n{tail}")
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the session did not reach '{state}' within {timeout_s:.0f} s; see {runtime.worker_log}")


def _say(line: str) -> None:
    print(f"\nyou: {line}")


async def run_demo(settings: Settings, runtime: LocalRuntime, out: Path, selfies: Path) -> LocalChatPort:
    port = LocalChatPort(out)
    async with BotApp(settings, runtime.redis_url) as app:
        app.start_delivery({port.platform: port})
        chat = LocalChat(app.service, port, user="demo")
        for line in ("/train", f"/train {selfies}", "/train start"):
            _say(line)
            await chat.say(line)
        # The model's first headshots come unasked (settings.first_headshots): READY again once they are posted.
        await _wait_for(app, chat, runtime, SessionState.READY, timeout_s=480 + 300)
        if not port.headshots:  # HEADSHOT_FIRST_HEADSHOTS=0 in .env: the user asks, as before
            _say("/headshot linkedin")
            await chat.say("/headshot linkedin")
            await _wait_for(app, chat, runtime, SessionState.READY, timeout_s=300)
        first_headshot = next(number for number, message in port.messages.items() if message.image_path)
        # Actions on headshot #1, as its buttons send them: variations, a remix in the user's words, an upscale.
        for line in ("/more 1", "/remix 1 on a sunny rooftop terrace", "/upscale 1"):
            _say(line)
            await chat.say(line)
            await _wait_for(app, chat, runtime, SessionState.READY, timeout_s=300)
        for line in (f"react {first_headshot}", "/favorites", "/status"):
            _say(line)
            await chat.say(line)
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headshot-demo", description=__doc__)
    parser.add_argument("--out", default="demo-output", help="folder for headshots and the contact sheet")
    parser.add_argument("--data-dir", default="demo-data", help="the demo's own data folder (emptied at start)")
    parser.add_argument(
        "--model", default="tiny", help="'tiny' or 'tiny-flux2' (offline, CPU), or an SDXL or FLUX.2 [klein] checkpoint"
    )
    parser.add_argument("--train-steps", type=int, default=120)
    parser.add_argument("--inference-steps", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()

    out, data_dir = Path(args.out), Path(args.data_dir)
    for folder in (out, data_dir):
        shutil.rmtree(folder, ignore_errors=True)
    # The model cache lives outside the emptied folder so the tiny model is built once per checkout.
    settings = Settings(
        model=args.model,
        data_dir=data_dir,
        model_cache_dir=Path(".cache/models"),
        train_steps=args.train_steps,
        inference_steps=args.inference_steps,
        progress_interval_s=1.0,
        daily_trainings=0,  # a demo shows the product, not an operator's limits
        daily_images=0,
    )
    selfies = data_dir / "sample-selfies"
    make_sample_selfies(selfies, count=settings.min_selfies)
    (selfies / "notes.txt").write_text("not a photo: the demo shows how a bad file is refused\n")

    with local_runtime(settings) as runtime:
        port = asyncio.run(run_demo(settings, runtime, out, selfies))

    print(f"\nDone in {time.monotonic() - started:.0f} s.")
    print(f"  {len(port.headshots)} headshots:   {out.resolve()}")
    print(f"  contact sheet:  {(out / 'contact-sheet.png').resolve()}")
    print(f"  favorites:      {(out / 'favorites').resolve()}")
    print(f"  sample selfies: {selfies.resolve()}")
    if settings.model in ("tiny", "tiny-flux2"):
        print(
            "  (the tiny model has random weights, so the images are abstract: run with an SDXL checkpoint and a GPU"
            " for real headshots)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
