"""The Discord frontend (discord.py 2): DMs and user installs, slash commands, persistent buttons, ⭐ reactions."""

from bot.discord.frontend import DiscordFrontend
from bot.discord.options import DiscordOptions
from bot.discord.port import DiscordPort

__all__ = ["DiscordFrontend", "DiscordOptions", "DiscordPort"]
