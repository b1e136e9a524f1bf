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
from pipeline.looks import LOOK_KEYS, choices_of
from pipeline.styles import CUSTOM_STYLE_MAX_CHARS, STYLES

__all__ = ["new_tree"]

Tree = app_commands.CommandTree[discord.Client]
_STYLE_CHOICES = [app_commands.Choice(name=style.title[:100], value=name) for name, style in list(STYLES.items())[:25]]
# Backdrop, outfit and aspect, each a choice list (at most 25, Discord's limit); left out: the style's own.
_LOOK_CHOICES = {
    key: [app_commands.Choice(name=title[:100], value=name) for name, title in list(choices_of(key).items())[:25]]
    for key in LOOK_KEYS
}
_PHOTO_DESCRIPTIONS = {f"photo{n}": texts.PHOTO_OPTION for n in range(1, 11)}
_ACTION_CHOICES = [app_commands.Choice(name=text, value=value) for value, text in texts.TRAIN_ACTIONS.items()]
_DESCRIBE_CHOICES = [app_commands.Choice(name=text, value=value) for value, text in texts.DESCRIBE_AS.items()]
_AGE_CHOICES = [app_commands.Choice(name=text, value=value) for value, text in texts.AGE_CHOICES.items()]


def new_tree(client: discord.Client, events: DiscordEvents) -> Tree:
    tree: Tree = app_commands.CommandTree(
        client,
        allowed_contexts=app_commands.AppCommandContext(dm_channel=True, private_channel=True),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
    )
    _add_train(tree, events)

    @tree.command(name="headshot", description=texts.COMMANDS["headshot"])
    @app_commands.describe(
        style="The look of your headshots (/styles describes them)",
        description=texts.DESCRIPTION_OPTION,
        **texts.LOOK_OPTIONS,
    )
    @app_commands.choices(
        style=_STYLE_CHOICES,
        backdrop=_LOOK_CHOICES["backdrop"],
        outfit=_LOOK_CHOICES["outfit"],
        aspect=_LOOK_CHOICES["aspect"],
    )
    async def headshot(
        interaction: discord.Interaction[Any],
        style: app_commands.Choice[str] | None = None,
        description: app_commands.Range[str, 1, CUSTOM_STYLE_MAX_CHARS] | None = None,
        backdrop: app_commands.Choice[str] | None = None,
        outfit: app_commands.Choice[str] | None = None,
        aspect: app_commands.Choice[str] | None = None,
    ) -> None:
        # The core reads several words that name no preset as the user's own look, so the text goes as it is; the
        # choices follow as typed options, and the core asks with buttons for a style when none was given.
        look = description or (style.value if style else "")
        chosen = {"backdrop": backdrop, "outfit": outfit, "aspect": aspect}
        options = [f"{key}:{choice.value}" for key, choice in chosen.items() if choice is not None]
        await events.on_command(interaction, " ".join(part for part in ("/headshot", look, *options) if part))

    @tree.command(name="favorite", description=texts.COMMANDS["favorite"])
    @app_commands.describe(number=texts.NUMBER_OPTION)
    async def favorite(interaction: discord.Interaction[Any], number: app_commands.Range[int, 1, 100_000]) -> None:
        await events.on_command(interaction, f"/favorite {number}")

    @tree.command(name="favorites", description=texts.COMMANDS["favorites"])
    @app_commands.describe(as_zip=texts.ZIP_OPTION)
    async def favorites(interaction: discord.Interaction[Any], as_zip: bool = False) -> None:
        await events.on_command(interaction, "/favorites zip" if as_zip else "/favorites")

    _add_actions(tree, events)

    for name in ("styles", "status", "cancel", "export", "delete", "help"):
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
    @app_commands.describe(
        action="Leave empty to add selfies",
        describe_as="How the pictures describe you (default: a person)",
        age="An age for the pictures",
        glasses="Whether you wear glasses in the pictures",
        **_PHOTO_DESCRIPTIONS,
    )
    @app_commands.choices(action=_ACTION_CHOICES, describe_as=_DESCRIBE_CHOICES, age=_AGE_CHOICES)
    async def train(
        interaction: discord.Interaction[Any],
        action: app_commands.Choice[str] | None = None,
        describe_as: app_commands.Choice[str] | None = None,
        age: app_commands.Choice[str] | None = None,
        glasses: bool | None = None,
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
        # The description's words, as the core reads them after /train (or /train new).
        words = [choice.value for choice in (describe_as, age) if choice is not None]
        if glasses is not None:
            words.append("glasses" if glasses else "no-glasses")
        described = " ".join(words)
        if action is not None and action.value == "start" and (photos or described):
            # Selfies (or a description) and "start" at once: first those, then start, as two commands in order.
            await events.on_command(interaction, f"/train {described}".rstrip(), photos, then="/train start")
            return
        command = " ".join(part for part in ("/train", action.value if action else "", described) if part)
        await events.on_command(interaction, command, photos)
