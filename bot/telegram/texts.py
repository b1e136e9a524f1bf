"""What a Telegram user reads that only Telegram needs (limits, deep links, album tips); the rest is core texts."""

from __future__ import annotations

from telegram.constants import FileSizeLimit

__all__ = ["COMMANDS", "not_an_image", "too_big"]

# Shown in Telegram's command menu (set_my_commands): name, then a description of at most 256 characters.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("train", "Start: send 10-20 selfies (as files keeps full quality)"),
    ("headshot", "Render headshots: pick style, backdrop, outfit and shape, or type /headshot linkedin square"),
    ("styles", "The styles you can pick"),
    ("status", "Where your session and jobs are"),
    ("favorites", "Your starred headshots, as original files (/favorites zip: in one ZIP)"),
    ("export", "Your trained model as LoRA files for diffusers and AUTOMATIC1111/ComfyUI"),
    ("more", "Variations of one headshot: /more 3"),
    ("remix", "One headshot in a new scene: /remix 3 on a beach at sunset"),
    ("upscale", "One headshot at twice the size: /upscale 3"),
    ("cancel", "Stop the running training or rendering"),
    ("delete", "Erase your selfies, model and headshots"),
    ("help", "How this works"),
)

GROUP_REFUSED = (
    "I only work in private chats: selfies are personal, and I never keep photos posted in groups. "
    "Send me your selfies here: {link}"
)
SEND_AS_FILE_TIP = (
    "Tip: Telegram compresses photos. Sending selfies as files (📎 → File) keeps full quality and gives a better model."
)
NOT_A_PHOTO_MESSAGE = "I can only use photos. Send your selfies as photos or as image files, or send /help."
DOWNLOAD_FAILED = "✗ {name}: I couldn't download it from Telegram. Please send it again."
BUTTON_EXPIRED = "That button has expired. Send the command again, or /help for the list."
INTERNAL_ERROR = "Something went wrong on our side and I couldn't do that. Please try again in a minute."
FILE_TOO_BIG_TO_SEND = "{name} is {size}, more than the {limit} Telegram lets me upload, so I couldn't send it."

# Bot API limits (https://core.telegram.org/bots/api#sending-files, #getfile) in decimal megabytes, as PTB encodes
# them: the smaller reading of "20 MB", so a photo of 10.2 million bytes goes as a file rather than being refused.
DOWNLOAD_LIMIT_BYTES = int(FileSizeLimit.FILESIZE_DOWNLOAD)
PHOTO_UPLOAD_LIMIT_BYTES = int(FileSizeLimit.PHOTOSIZE_UPLOAD)
FILE_UPLOAD_LIMIT_BYTES = int(FileSizeLimit.FILESIZE_UPLOAD)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def not_an_image(name: str, mime_type: str) -> str:
    """The refusal for a document that is no image: it is never downloaded."""
    return f"✗ {name}: that is not a photo ({mime_type}). Send selfies as photos, or as JPEG, PNG, WebP or HEIC files."


def too_big(name: str, size: int) -> str:
    """The refusal for a file over getFile's limit: names the size, the limit and what to do."""
    return (
        f"✗ {name}: that file is {megabytes(size)}, and Telegram lets bots download at most "
        f"{DOWNLOAD_LIMIT_BYTES // 10**6} MB. Send a smaller photo (a phone selfie is usually 2-8 MB)."
    )
