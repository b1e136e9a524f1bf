"""The Telegram frontend: builds the PTB Application from settings and runs it inside the bot's event loop.

``Application.run_polling`` would own the loop; the bot process runs several frontends and event delivery in one
loop, so this drives PTB's lifecycle by hand: initialize, start, updater (polling or webhook), and back down.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import secrets
from typing import TYPE_CHECKING, Any

from telegram import BotCommand, BotCommandScopeAllPrivateChats, Update
from telegram.error import InvalidToken
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from bot.core.locks import UserLocks
from bot.telegram import texts
from bot.telegram.options import TelegramOptions
from bot.telegram.ordering import UserOrderedUpdates
from bot.telegram.port import TelegramPort
from bot.telegram.updates import TelegramUpdates
from jobs.logging_setup import mask_secrets
from jobs.settings import Settings

if TYPE_CHECKING:  # bot.app imports the whole core; only the type is needed here
    from bot.app import BotApp

__all__ = ["ALLOWED_UPDATES", "TelegramFrontend"]

log = logging.getLogger(__name__)

# Reactions reach a bot only when asked for by name; nothing else is handled, so nothing else is fetched.
# my_chat_member says that a user blocked the bot (or unblocked it): their jobs end rather than post into a wall.
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MESSAGE_REACTION, Update.MY_CHAT_MEMBER]
_WANTED = filters.UpdateType.MESSAGE & (filters.TEXT | filters.PHOTO | filters.Document.ALL | filters.CAPTION)


class TelegramFrontend:
    """``headshot-bot`` builds one when ``TELEGRAM_TOKEN`` is set; ``port`` is usable at once, ``run`` serves."""

    def __init__(self, settings: Settings, options: TelegramOptions | None = None) -> None:
        if settings.telegram_token is None:
            raise ValueError("TELEGRAM_TOKEN is not set: put the token from @BotFather in the environment or .env")
        self.options = options or TelegramOptions()
        if self.options.webhook_url and importlib.util.find_spec("tornado") is None:
            raise RuntimeError(
                f"webhook mode (webhook_url={self.options.webhook_url!r}) needs PTB's webhook server: "
                "pip install 'python-telegram-bot[webhooks]', or unset HEADSHOT_TELEGRAM_WEBHOOK_URL to poll"
            )
        # httpx logs every request URL at INFO, and Bot API URLs contain the token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        _hide_in_logs(settings.telegram_token.get_secret_value())
        self.locks = UserLocks()
        self.ordering = UserOrderedUpdates(self.locks)
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value())
            .base_url(self.options.base_url)
            .base_file_url(self.options.base_file_url)
            .concurrent_updates(self.ordering)
            .job_queue(None)
            .build()
        )
        self.port = TelegramPort(
            self.application.bot, edit_interval_s=self.options.edit_interval_s, max_retries=self.options.max_retries
        )
        self.serving = asyncio.Event()  # set once updates are fetched (polling) or taken (the webhook listens)

    def _register(self, app: BotApp) -> None:
        application = self.application
        updates = TelegramUpdates(
            app.service,
            self.port,
            self.locks,
            self.options.album_wait_s,
            application.create_task,
            max_queued=self.options.max_queued_updates,
        )
        self.ordering.arrival = updates.arrive
        application.add_handler(MessageHandler(_WANTED, updates.on_message))
        application.add_handler(CallbackQueryHandler(updates.on_button))
        application.add_handler(MessageReactionHandler(updates.on_reaction))
        application.add_handler(ChatMemberHandler(updates.on_member, ChatMemberHandler.MY_CHAT_MEMBER))
        application.add_handler(
            MessageHandler(
                filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ~filters.StatusUpdate.ALL, updates.on_other
            )
        )
        application.add_error_handler(updates.on_error)

    async def run(self, app: BotApp, stop: asyncio.Event) -> None:
        """Serve updates until ``stop`` is set; pending edits are flushed before the bot shuts down."""
        application = self.application
        self._register(app)
        # 1. Connect: getMe (fails fast on a bad token), the command menu.
        try:
            await application.initialize()
        except InvalidToken:
            # Not chained: PTB's message quotes the token, and a traceback would print it.
            raise RuntimeError(
                "Telegram refused TELEGRAM_TOKEN (getMe: unauthorized): copy the bot's token again from @BotFather"
            ) from None
        self.port.ready.set()  # delivery may post from here on
        try:
            # The menu only where the bot works: groups get one refusal, not a list of commands that do nothing.
            commands = [BotCommand(name, text) for name, text in texts.COMMANDS]
            await self.port.call(
                lambda: application.bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats()),
                "setMyCommands",
            )
            # 2. Start handling, then fetching: polling by default, a webhook when one is configured.
            await application.start()
            updater = application.updater
            assert updater is not None  # ApplicationBuilder always builds one unless told not to
            if self.options.webhook_url:
                # Never without a secret: PTB then takes any POST, and anyone who finds the URL could send
                # "/delete confirm" as any user. Unset, a new one each start (PTB passes it to setWebhook).
                configured = self.options.webhook_secret
                secret = configured.get_secret_value() if configured else secrets.token_urlsafe(32)
                _hide_in_logs(secret)  # PTB logs setWebhook's parameters at DEBUG
                await updater.start_webhook(
                    listen=self.options.webhook_listen,
                    port=self.options.webhook_port,
                    url_path=self.options.webhook_path,
                    webhook_url=self.options.webhook_url,
                    allowed_updates=ALLOWED_UPDATES,
                    secret_token=secret,
                )
            else:
                await updater.start_polling(timeout=self.options.poll_timeout_s, allowed_updates=ALLOWED_UPDATES)
            self.serving.set()
            log.info(
                "Telegram bot @%s is up (%s)",
                application.bot.username,
                "webhook" if self.options.webhook_url else "polling",
            )
            await stop.wait()
        finally:
            # 3. Stop fetching, finish the updates and album timers in hand, flush edits, close the connections.
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await self.port.aclose()
            await application.shutdown()


class _HideToken(logging.Filter):
    """Masks the token in records of the HTTP and PTB loggers (PTB logs its API URL, token included, at DEBUG),
    or the webhook's secret token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = mask_secrets(message, [self.token]), None
        return True


def _hide_in_logs(token: str) -> None:
    # Logger filters are not inherited, so each PTB/HTTP logger gets one; PTB creates them all at import.
    names = [name for name in logging.root.manager.loggerDict if name.startswith(("telegram", "httpx", "httpcore"))]
    for name in {*names, "httpx", "httpcore"}:
        logger = logging.getLogger(name)
        if not any(isinstance(known, _HideToken) and known.token == token for known in logger.filters):
            logger.addFilter(_HideToken(token))
