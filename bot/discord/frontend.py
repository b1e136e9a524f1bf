"""The Discord frontend: a discord.py client inside the bot's event loop, its commands, buttons and events.

``Client.run`` would own the loop; the bot process runs several frontends and event delivery in one loop, so this
follows discord.py's ``examples/advanced_startup.py``: ``login`` (REST, fails fast on a bad token), ``connect`` (the
gateway) as a task, and ``close`` when the bot stops. The slash commands are published beside serving, only when
they changed (``sync``). Shutdown is in two steps, so nothing in flight is cut off: ``stop_receiving`` closes the
gateway and lets the events in hand finish; the HTTP client closes only at ``stop``, after delivery has drained.
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
from bot.discord.sync import STAMP_FILE, sync_if_changed
from jobs.settings import Settings

if TYPE_CHECKING:  # bot.app imports the whole core; only the type is needed here
    from bot.app import BotApp

__all__ = ["INTENTS", "DiscordFrontend"]

log = logging.getLogger(__name__)

# DMs and their reactions; message content needs no privileged intent in DMs. ``guilds`` (not privileged) only keeps
# discord.py's state whole for servers that install the app; no server message or reaction is ever received.
INTENTS = discord.Intents(guilds=True, dm_messages=True, dm_reactions=True)
SETTLE_S = 10.0  # how long a shutdown waits for the events in hand


class DiscordFrontend:
    """``headshot-bot`` builds one when ``DISCORD_TOKEN`` is set; ``port`` is usable at once, ``run`` serves once."""

    def __init__(self, settings: Settings, options: DiscordOptions | None = None) -> None:
        if settings.discord_token is None:
            raise ValueError("DISCORD_TOKEN is not set: put the bot token from the Discord developer portal in .env")
        self._token = settings.discord_token
        self._stamp = settings.data_dir / STAMP_FILE
        self.options = options or DiscordOptions()
        self.locks = UserLocks()
        self.client = _Client()
        options = self.options
        self.port = DiscordPort(
            self.client, edit_interval_s=options.edit_interval_s, upload_limit_bytes=options.upload_limit_bytes
        )
        self._receiving = True
        self._gateway: asyncio.Task[None] | None = None

    @property
    def up(self) -> asyncio.Event:
        """Set once the gateway said READY: events flow from then on."""
        return self.client.up

    async def run(self, app: BotApp, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then close the clients; pending edits are flushed first."""
        client = self.client
        # 1. Where Discord is (a local stand-in in tests), what to handle, and the commands to publish.
        if self.options.api_base:
            discord.http.Route.BASE = self.options.api_base
        if self.options.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.options.gateway_url)
        client.events = DiscordEvents(app.service, self.port, self.locks, app.store, self.options.max_download_bytes)
        client.tree = new_tree(client, client.events)
        sync: asyncio.Task[None] | None = None
        try:
            # 2. Log in: GET /users/@me fails fast on a bad token; setup_hook registers the buttons.
            try:
                await client.login(self._token.get_secret_value())
            except discord.LoginFailure:
                raise RuntimeError(
                    "Discord refused DISCORD_TOKEN (401 on /users/@me): copy the bot token again from the developer "
                    "portal"
                ) from None
            self.port.ready.set()
            # 3. The commands, beside serving: a sync that waits out a 429 or is refused never holds up DMs.
            if self.options.sync_commands:
                sync = asyncio.create_task(self._sync_commands(), name="discord-command-sync")
            # 4. The gateway until stop; if it ends on its own first, its error ends the frontend.
            await self._receive(stop)
        finally:
            # 5. Stop receiving (unless told already), flush the edits, close the HTTP client.
            if sync is not None:
                sync.cancel()
            await self.stop_receiving()
            await self.port.aclose()
            await client.close()

    async def stop_receiving(self) -> None:
        """Close the gateway: no new events arrive; those in hand finish, and the port keeps posting until ``run``'s
        ``stop`` (so delivery can drain through it)."""
        self._receiving = False
        gateway = self._gateway
        if gateway is not None and not gateway.done():
            gateway.cancel()
            await asyncio.wait({gateway})
        socket = self.client.ws
        if socket is not None and socket.open:
            await socket.close(code=1000)
        events: DiscordEvents | None = getattr(self.client, "events", None)
        if events is not None:
            await events.settle(SETTLE_S)

    async def _receive(self, stop: asyncio.Event) -> None:
        if self._receiving:
            self._gateway = asyncio.create_task(self.client.connect(), name="discord-gateway")
            stopped = asyncio.create_task(stop.wait(), name="discord-stop")
            try:
                done, _ = await asyncio.wait({self._gateway, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if self._gateway in done and self._receiving:
                self._gateway.result()  # its error, if it had one
                raise RuntimeError("the Discord gateway closed on its own")
        await stop.wait()

    async def _sync_commands(self) -> None:
        application_id = self.client.application_id
        if application_id is None:
            log.error("Discord named no application id at login; the slash commands were not published")
            return
        try:
            await sync_if_changed(self.client.tree, application_id, self._stamp)
        except Exception:  # a sync is never worth the frontend: the commands Discord has keep working
            log.exception("publishing the slash commands failed; the next start tries again")


class _Client(discord.Client):
    """discord.py calls ``on_<event>`` methods; each hands its event to ``DiscordEvents``, errors to its handler."""

    events: DiscordEvents
    tree: Tree

    def __init__(self) -> None:
        super().__init__(intents=INTENTS)
        self.up = asyncio.Event()

    async def setup_hook(self) -> None:
        # Registered by class, not per message: every button with our prefix works, also those sent before a restart.
        self.add_dynamic_items(CommandButton)

    async def on_connect(self) -> None:
        # READY parsed: a new session, so events flow now, and those sent while none was open are read back.
        # (on_ready comes later: discord.py waits for guilds we never ask for.)
        log.info("Discord bot %s is connected", self.user)
        self.up.set()
        await self.events.catch_up()

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
