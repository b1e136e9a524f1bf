"""What a Discord user reads that only Discord needs (limits, the server refusal, command help); the rest is core."""

from __future__ import annotations

__all__ = ["COMMANDS", "echo", "megabytes", "not_an_image", "too_big"]

# Slash command name -> description (at most 100 characters each, Discord's limit).
COMMANDS: dict[str, str] = {
    "train": "Start: attach up to 10 selfies here, or drop more into this DM",
    "headshot": "Render headshots in a style",
    "styles": "The styles you can pick",
    "status": "Where your session and jobs are",
    "favorites": "Your starred headshots, as original files",
    "favorite": "Keep headshot number n as a favorite",
    "export": "Your trained model as LoRA files for diffusers and AUTOMATIC1111/ComfyUI",
    "more": "Variations of headshot number n",
    "remix": "Headshot number n in a new scene, in your words",
    "upscale": "Headshot number n at twice the size",
    "cancel": "Stop the running training or rendering",
    "delete": "Erase your selfies, model and headshots",
    "help": "How this works",
}
TRAIN_ACTIONS: dict[str, str] = {"start": "Start training now", "new": "Start over with new selfies"}
NUMBER_OPTION = "The number in the headshot's caption, e.g. 3 for #3"
WORDS_OPTION = "What to change, e.g. on a beach at sunset"
PHOTO_OPTION = "A selfie: just you, face clearly visible"
# /train's options for how the pictures describe the user (pipeline/subject.py), each a /train word.
DESCRIBE_AS: dict[str, str] = {"woman": "A woman", "man": "A man", "person": "A person"}
AGE_CHOICES = {age: f"In your {age}" for age in ("20s", "30s", "40s", "50s", "60s", "70s")} | {
    "any-age": "No age in the pictures"
}
ZIP_OPTION = "All in one ZIP file (split in parts when over the upload limit)"

SERVER_REFUSED = (
    "DM me your selfies: I only work in direct messages, and I never keep anything posted in a server. "
    "Open my profile and press Message, then send /train."
)
BUTTON_EXPIRED = "That button has expired. Send the command again, or /help for the list."
DOWNLOAD_FAILED = "✗ {name}: I couldn't download it from Discord. Please send it again."
REENCODED = "(re-encoded as JPEG to fit Discord's {limit} upload limit)"
FILE_TOO_BIG_TO_SEND = "{name} is {size}, more than the {limit} Discord lets me upload, so I couldn't send it."
INTERNAL_ERROR = "Something went wrong on our side and I couldn't do that. Please try again in a minute."
ELSEWHERE = "I answered in our DM."
OPEN_DM_FIRST = (
    "I can't send you direct messages, and that is where I answer. Open a DM with me first (my profile, then "
    "Message), or allow DMs from me in your privacy settings; then send the command again."
)
LOOK_OPTIONS = {
    "backdrop": "What is behind you (default: the style's own)",
    "outfit": "What you wear (default: the style's own)",
    "aspect": "The shape: square for avatars, 4:5 for profiles (default), 2:3 for portraits",
}
DESCRIPTION_OPTION = "Or describe your own look in a few words, e.g. navy suit on a rooftop (instead of a style)"


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def too_big(name: str, size: int, limit: int) -> str:
    """The refusal for an attachment over the download limit: names the size, the limit and what to do."""
    return (
        f"✗ {name}: that file is {megabytes(size)}, and I take photos up to {megabytes(limit)}. "
        "Send a smaller photo (a phone selfie is usually 2-8 MB)."
    )


def not_an_image(name: str, content_type: str) -> str:
    return f"✗ {name}: that is a {content_type} file, not a photo. Send JPEG, PNG, WebP or HEIC selfies."


def echo(command: str, photos: int) -> str:
    """What the command's own response ends up saying, once the answer is posted below it (as Midjourney echoes)."""
    attached = f" + {photos} photo{'s' if photos != 1 else ''}" if photos else ""
    return f"`{command}`{attached}"
