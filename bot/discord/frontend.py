"""The Discord frontend: a discord.py client inside the bot's event loop, its commands, buttons and events.

``Client.run`` would own the loop; the bot process runs several frontends and event delivery in one loop, so this
follows discord.py's ``examples/advanced_startup.py``: ``login`` (REST, fails fast on a bad token; the commands are
synced there), ``connect`` (the gateway) as a task, and ``close`` when the bot stops.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.core.locks import UserLocks
from bot.discord.commands import Tree, new_tree
from bot.discord.components import CommandButton
from bot.discord.events import DiscordEvents
from bot.discord.options import DiscordOptions
from bot.discord.port import DiscordPort
from jobs.settings import Settings

if TYPE_CHECKING:  # bot.app imports the whole core; only the type is needed here
    from bot.app import BotApp

__all__ = ["INTENTS", "DiscordFrontend"]

log = logging.getLogger(__name__)

# DMs and their reactions; message content needs no privileged intent in DMs. ``guilds`` (not privileged) only keeps
# discord.py's state whole for servers that install the app; no server message or reaction is ever received.
INTENTS = discord.Intents(guilds=True, dm_messages=True, dm_reactions=True)


class DiscordFrontend:
    """``headshot-bot`` builds one when ``DISCORD_TOKEN`` is set; ``port`` is usable at once, ``run`` serves."""

    def __init__(self, settings: Settings, options: DiscordOptions | None = None) -> None:
        if settings.discord_token is None:
            raise ValueError("DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in .env")
        self._token = settings.discord_token
        self.options = options or DiscordOptions()
        self.locks = UserLocks()
        self.client = _Client(self.options.sync_commands)
        options = self.options
        self.port = DiscordPort(
            self.client, edit_interval_s=options.edit_interval_s, upload_limit_bytes=options.upload_limit_bytes
        )

    @property
    def up(self) -> asyncio.Event:
        """Set once the gateway said READY: events flow from then on."""
        return self.client.up

    async def run(self, app: BotApp, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; pending edits are flushed before the client closes."""
        client = self.client
        # 1. Where Discord is (a local stand-in in tests), what to handle, and the commands to publish.
        if self.options.api_base:
            discord.http.Route.BASE = self.options.api_base
        if self.options.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.options.gateway_url)
        client.events = DiscordEvents(app.service, self.port, self.locks, self.options.max_download_bytes)
        client.tree = new_tree(client, client.events)
        # 2. Log in: GET /users/@me fails fast on a bad token; setup_hook registers the buttons and syncs commands.
        try:
            await client.login(self._token.get_secret_value())
        except discord.LoginFailure:
            await client.close()
            raise RuntimeError(
                "Discord refused DISCORD_TOKEN (401 on /users/@me): copy the bot token again from the developer portal"
            ) from None
        self.port.ready.set()
        # 3. The gateway runs as a task until stop; if it ends first, its error ends the frontend.
        gateway = asyncio.create_task(client.connect(), name="discord-gateway")
        stopped = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            done, _ = await asyncio.wait({gateway, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if gateway in done:
                gateway.result()
        finally:
            stopped.cancel()
            await self.port.aclose()
            await client.close()
            if not gateway.done():
                await asyncio.wait({gateway}, timeout=5)
            if not gateway.done():
                gateway.cancel()


class _Client(discord.Client):
    """discord.py calls ``on_<event>`` methods; each hands its event to ``DiscordEvents``, errors to its handler."""

    events: DiscordEvents
    tree: Tree

    def __init__(self, sync_commands: bool) -> None:
        super().__init__(intents=INTENTS)
        self.sync_commands = sync_commands
        self.up = asyncio.Event()

    async def setup_hook(self) -> None:
        # Registered by class, not per message: every button with our prefix works, also those sent before a restart.
        self.add_dynamic_items(CommandButton)
        if self.sync_commands:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    async def on_connect(self) -> None:
        # READY parsed: events flow now. (on_ready comes later: discord.py waits for guilds we never ask for.)
        log.info("Discord bot %s is connected", self.user)
        self.up.set()

    async def on_message(self, message: discord.Message) -> None:
        await self.events.on_message(message)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.events.on_raw_reaction_add(payload, self.user.id if self.user else None)

    async def on_command_button(self, interaction: discord.Interaction[Any], ref: str) -> None:
        try:
            await self.events.on_button(interaction, ref)
        except Exception as error:
            await self.events.on_error(error, None, interaction)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        if error is None:
            return
        await self.events.on_error(error, _chat_id(args[0]) if args else None)


def _chat_id(event: object) -> str | None:
    """The DM an event came from, to tell the user something went wrong; None outside DMs."""
    if isinstance(event, discord.Message) and isinstance(event.channel, discord.DMChannel):
        return str(event.channel.id)
    if isinstance(event, discord.RawReactionActionEvent) and event.guild_id is None:
        return str(event.channel_id)
    return None
