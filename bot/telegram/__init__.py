"""The Telegram frontend (python-telegram-bot 22): private chats, albums, inline buttons, edited progress."""

from bot.telegram.frontend import TelegramFrontend
from bot.telegram.options import TelegramOptions
from bot.telegram.port import TelegramPort

__all__ = ["TelegramFrontend", "TelegramOptions", "TelegramPort"]
