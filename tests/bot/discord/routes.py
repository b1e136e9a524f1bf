"""What each REST route of the Discord stand-in does to its world, as Discord's own would.

Truthful where the bot's behaviour depends on it: the first followup after a deferred ("thinking…") ack edits the
loading message; an unknown message answers 404/10008; a command sync that asks for user installs is refused (400)
unless User Install is on; channel history pages newest first, as discord.py expects.
"""

from __future__ import annotations

import time
from typing import Any

from tests.bot.discord.world import APP_ID, BOT_USER, DcUser, DiscordWorld, Sent

__all__ = ["DiscordRoutes", "Refused"]

_EPHEMERAL = 64
USER_INSTALL = 1  # integration_types value of a user install


class Refused(Exception):
    """A route's error answer: Discord's JSON error body with its HTTP status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class DiscordRoutes(DiscordWorld):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[dict[str, Any]] = []
        self.user_install = True  # the developer portal's "User Install"; off, a user-install command is refused
        self._loading: set[str] = set()  # interaction tokens acked "thinking…" whose loading message is unedited

    def route(self, method: str, parts: list[str], query: Any, body: Any, files: list[tuple[str, bytes]]) -> Any:
        """The route's answer; None for a route the stand-in lacks."""
        match method, parts:
            case "GET", ["users", "@me"]:
                return BOT_USER
            case "GET", ["oauth2", "applications", "@me"]:
                return {
                    "id": str(APP_ID),
                    "name": "Headshots",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": BOT_USER,
                    "verify_key": "k",
                    "flags": 0,
                }
            case "PUT", ["applications", _, "commands"]:
                return self._sync(body)
            case "POST", ["users", "@me", "channels"]:
                user = DcUser(int(body["recipient_id"]), "someone")
                return {"id": str(user.dm), "type": 1, "recipients": [user.json()], "last_message_id": None}
            case "GET", ["channels", channel_id, "messages"]:
                after = int(query["after"]) if "after" in query else None
                return self.history(int(channel_id), after, int(query.get("limit", 50)))
            case "POST", ["channels", channel_id, "messages"]:
                sent = self.post(int(channel_id), body.get("content") or "", body.get("components") or [], files)
                return self.message_json(sent)
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                return self._edit(self._message(int(message_id), int(channel_id)), body)
            case "POST", ["interactions", interaction_id, token, "callback"]:
                return self._callback(int(interaction_id), token, body)
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                self._loading.discard(token)
                return self._edit(self._original(token), body)
            case "POST", ["webhooks", _, token]:
                return self._followup(token, body, files)
        return None

    def _sync(self, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite of the global commands; a user-install command needs User Install on in the portal."""
        if not self.user_install and any(USER_INSTALL in (c.get("integration_types") or []) for c in body):
            raise Refused(400, 50035, "Invalid Form Body: user installs are not enabled for this application")
        self.commands = body
        return [
            {**command, "id": str(900 + n), "application_id": str(APP_ID), "version": "1"}
            for n, command in enumerate(body)
        ]

    def _message(self, message_id: int, channel_id: int | None = None) -> Sent:
        sent = self.sent.get(message_id)
        if sent is None or (channel_id is not None and sent.channel_id != channel_id):
            raise Refused(404, 10008, "Unknown Message")
        return sent

    def _original(self, token: str) -> Sent:
        original = next((sent for sent in self.sent.values() if sent.interaction_token == token), None)
        if original is None:
            raise Refused(404, 10008, "Unknown Message")
        return original

    def _followup(self, token: str, body: dict[str, Any], files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """After a deferred ("thinking…") ack, the first followup edits the loading message, and its ephemeral flag
        is ignored (receiving-and-responding.mdx, "Create Followup Message"); later ones are new messages."""
        original = self._original(token)
        if token in self._loading:
            self._loading.discard(token)
            return self._edit(original, body)
        ephemeral = bool(body.get("flags", 0) & _EPHEMERAL)
        sent = self.post(original.channel_id, body.get("content") or "", [], files, ephemeral=ephemeral)
        return self.message_json(sent)

    def _edit(self, sent: Sent, body: dict[str, Any]) -> dict[str, Any]:
        if "content" in body:
            sent.content = body["content"] or ""
        if "components" in body:
            sent.components = body["components"] or []
        sent.history.append((time.monotonic(), sent.content))
        return self.message_json(sent)

    def _callback(self, interaction_id: int, token: str, body: dict[str, Any]) -> dict[str, Any]:
        """Types 4 (reply), 5 (deferred reply: "thinking…") post a message; 6 (deferred update) posts nothing."""
        kind, data = body["type"], body.get("data") or {}
        answer: dict[str, Any] = {"id": str(interaction_id), "type": 2}
        if kind not in (4, 5):
            return {"interaction": answer, "resource": {"type": kind}}
        ephemeral = bool(data.get("flags", 0) & _EPHEMERAL)
        user_id, channel_id = self._interaction_owner(interaction_id)
        # Ephemeral replies only the user sees: filed under the user's id rather than a channel.
        content = data.get("content") or ("…thinking" if kind == 5 else "")
        sent = self.post(
            user_id if ephemeral else channel_id, content, [], [], ephemeral=ephemeral, interaction_token=token
        )
        if kind == 5:
            self._loading.add(token)
        answer.update(
            response_message_id=str(sent.id), response_message_loading=kind == 5, response_message_ephemeral=ephemeral
        )
        return {"interaction": answer, "resource": {"type": kind, "message": self.message_json(sent)}}

    def _interaction_owner(self, interaction_id: int) -> tuple[int, int]:
        for event, data in self.dispatched:
            if event == "INTERACTION_CREATE" and int(data["id"]) == interaction_id:
                user = data.get("user") or data["member"]["user"]
                return int(user["id"]), int(data["channel_id"])
        raise Refused(404, 10062, "Unknown interaction")

    def history(self, channel_id: int, after: int | None, limit: int) -> list[dict[str, Any]]:
        """A channel's messages, the users' and the bot's: the ``limit`` oldest after ``after`` (else the latest),
        listed newest first whichever way it pages."""
        bots = [self.message_json(sent) for sent in self.sent.values() if sent.channel_id == channel_id]
        mine = sorted(self.user_messages.get(channel_id, []) + bots, key=lambda message: int(message["id"]))
        if after is None:
            return mine[-limit:][::-1]
        return [message for message in mine if int(message["id"]) > after][:limit][::-1]
