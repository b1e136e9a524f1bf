"""Slash commands published only when they changed, and never fatally.

Discord rate-limits command syncs, unchanged ones included, dynamically (Rapptz/discord.py#10082), and refuses a
user-install command with 400 while the app has User Install off. So a start syncs only when the hash of the
payload differs from the one recorded after the last sync that Discord took (``discord-commands.json`` in the data
directory, per application); a refused sync is logged and tried again at the next start, while the commands
Discord already has keep working.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

__all__ = ["STAMP_FILE", "commands_hash", "sync_if_changed"]

log = logging.getLogger(__name__)

STAMP_FILE = "discord-commands.json"


def commands_hash(tree: app_commands.CommandTree[Any]) -> str:
    """SHA-256 of the global commands exactly as ``tree.sync()`` would send them, keys sorted."""
    payload = [command.to_dict(tree) for command in tree.get_commands()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def sync_if_changed(tree: app_commands.CommandTree[Any], application_id: int, stamp: Path) -> bool:
    """Publish the commands unless Discord already has these; True when a sync went through."""
    digest = commands_hash(tree)
    recorded = _read(stamp)
    if recorded.get(str(application_id)) == digest:
        log.info("slash commands unchanged since the last sync; not publishing them again")
        return False
    try:
        synced = await tree.sync()
    except discord.HTTPException as error:
        # A 400 here is usually "User Install" off in the developer portal; a 429 a sync limit. Either way the
        # bot serves on with the commands Discord has, and the next start tries again.
        log.error(
            "publishing the slash commands failed (HTTP %s, code %s: %s); DMs are still served, the next start "
            "tries again. On a 400, check that User Install and Guild Install are enabled in the developer portal",
            error.status,
            error.code,
            error.text,
        )
        return False
    recorded[str(application_id)] = digest
    stamp.parent.mkdir(parents=True, exist_ok=True)
    partial = stamp.with_suffix(".tmp")
    partial.write_text(json.dumps(recorded, indent=1))
    partial.replace(stamp)  # whole or not at all
    log.info("synced %d global slash commands", len(synced))
    return True


def _read(stamp: Path) -> dict[str, str]:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: a sync rewrites it
    return recorded if isinstance(recorded, dict) else {}
