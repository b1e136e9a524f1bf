"""The slash commands: each one turns its options into the core's command text and hands it to ``DiscordEvents``.

Usable in the bot's DMs and, for user installs, in other private chats (``allowed_contexts`` and
``allowed_installs`` are set on the tree, so every command carries them); never in server channels.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.discord import texts
from bot.discord.events import DiscordEvents
from pipeline.styles import CUSTOM_STYLE_MAX_CHARS, STYLES

__all__ = ["new_tree"]

Tree = app_commands.CommandTree[discord.Client]
_STYLE_CHOICES = [app_commands.Choice(name=style.title[:100], value=name) for name, style in list(STYLES.items())[:25]]
_PHOTO_DESCRIPTIONS = {f"photo{n}": texts.PHOTO_OPTION for n in range(1, 11)}
_ACTION_CHOICES = [app_commands.Choice(name=text, value=value) for value, text in texts.TRAIN_ACTIONS.items()]


def new_tree(client: discord.Client, events: DiscordEvents) -> Tree:
    tree: Tree = app_commands.CommandTree(
        client,
        allowed_contexts=app_commands.AppCommandContext(dm_channel=True, private_channel=True),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
    )
    _add_train(tree, events)

    @tree.command(name="headshot", description=texts.COMMANDS["headshot"])
    @app_commands.describe(
        style="The look of your headshots (/styles describes them)", description=texts.DESCRIPTION_OPTION
    )
    @app_commands.choices(style=_STYLE_CHOICES)
    async def headshot(
        interaction: discord.Interaction[Any],
        style: app_commands.Choice[str] | None = None,
        description: app_commands.Range[str, 1, CUSTOM_STYLE_MAX_CHARS] | None = None,
    ) -> None:
        # The core reads several words that name no preset as the user's own look, so the text goes as it is.
        look = description or (style.value if style else "")
        await events.on_command(interaction, f"/headshot {look}".rstrip())

    @tree.command(name="favorite", description=texts.COMMANDS["favorite"])
    @app_commands.describe(number=texts.NUMBER_OPTION)
    async def favorite(interaction: discord.Interaction[Any], number: app_commands.Range[int, 1, 100_000]) -> None:
        await events.on_command(interaction, f"/favorite {number}")

    _add_actions(tree, events)

    for name in ("styles", "status", "cancel", "favorites", "delete", "help"):
        tree.add_command(_plain(name, events))

    @tree.error
    async def on_error(interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        await events.on_error(error, None, interaction)

    return tree


def _add_actions(tree: Tree, events: DiscordEvents) -> None:
    """``/more <number>``, ``/remix <number> <words>``, ``/upscale <number>``: the buttons under a headshot send
    the same commands."""

    @tree.command(name="more", description=texts.COMMANDS["more"])
    @app_commands.describe(number=texts.NUMBER_OPTION)
    async def more(interaction: discord.Interaction[Any], number: app_commands.Range[int, 1, 100_000]) -> None:
        await events.on_command(interaction, f"/more {number}")

    @tree.command(name="remix", description=texts.COMMANDS["remix"])
    @app_commands.describe(number=texts.NUMBER_OPTION, words=texts.WORDS_OPTION)
    async def remix(
        interaction: discord.Interaction[Any],
        number: app_commands.Range[int, 1, 100_000],
        words: app_commands.Range[str, 1, CUSTOM_STYLE_MAX_CHARS],
    ) -> None:
        await events.on_command(interaction, f"/remix {number} {words}")

    @tree.command(name="upscale", description=texts.COMMANDS["upscale"])
    @app_commands.describe(number=texts.NUMBER_OPTION)
    async def upscale(interaction: discord.Interaction[Any], number: app_commands.Range[int, 1, 100_000]) -> None:
        await events.on_command(interaction, f"/upscale {number}")


def _plain(name: str, events: DiscordEvents) -> app_commands.Command[Any, Any, None]:
    """A command without options: its text is its name."""

    async def callback(interaction: discord.Interaction[Any]) -> None:
        await events.on_command(interaction, f"/{name}")

    return app_commands.Command(name=name, description=texts.COMMANDS[name], callback=callback)


def _add_train(tree: Tree, events: DiscordEvents) -> None:
    """``/train [action] [photo1..photo10]``: Discord has no list-of-files option, so ten optional ones."""

    @tree.command(name="train", description=texts.COMMANDS["train"])
    @app_commands.describe(action="Leave empty to add selfies", **_PHOTO_DESCRIPTIONS)
    @app_commands.choices(action=_ACTION_CHOICES)
    async def train(
        interaction: discord.Interaction[Any],
        action: app_commands.Choice[str] | None = None,
        photo1: discord.Attachment | None = None,
        photo2: discord.Attachment | None = None,
        photo3: discord.Attachment | None = None,
        photo4: discord.Attachment | None = None,
        photo5: discord.Attachment | None = None,
        photo6: discord.Attachment | None = None,
        photo7: discord.Attachment | None = None,
        photo8: discord.Attachment | None = None,
        photo9: discord.Attachment | None = None,
        photo10: discord.Attachment | None = None,
    ) -> None:
        given = (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8, photo9, photo10)
        photos = [photo for photo in given if photo is not None]
        if action is not None and action.value == "start" and photos:
            # Selfies and "start" at once: add them first, then start, as two commands in this order.
            await events.on_command(interaction, "/train", photos, then="/train start")
            return
        await events.on_command(interaction, f"/train {action.value}" if action else "/train", photos)
