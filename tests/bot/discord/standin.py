"""A local stand-in of Discord (aiohttp): the real discord.py talks real HTTP and a real gateway websocket to it.

REST under ``/api/v10`` (the routes the bot calls), the gateway at ``/gateway`` (HELLO -> IDENTIFY -> READY,
heartbeats acked, then the events the test dispatches) and attachments at ``/cdn``. Every call is recorded; a route
the stand-in lacks answers 404 and is listed in ``unknown``, which fails the test at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.bot.discord.world import APP_ID, BOT_USER, Call, DcUser, DiscordWorld, Sent

__all__ = ["BOT_USER", "DcUser", "DiscordStandin", "Sent"]

_JSON = {"Content-Type": "application/json"}  # exactly: discord.py decodes JSON only for this header
_EPHEMERAL = 64


class DiscordStandin(DiscordWorld):
    def __init__(self, token: str) -> None:
        super().__init__(lambda: f"http://127.0.0.1:{self.port}/cdn")
        self.token = token
        self.unknown: list[str] = []
        self.identified: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self._fail: dict[str, list[float]] = {}
        self.blocked: set[int] = set()  # DM channel ids whose user blocked the bot
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self.port = 0

    # Server lifecycle.

    async def start(self) -> None:
        app = web.Application(client_max_size=60 * 2**20)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{id}/{name}", self._cdn)
        app.router.add_route("*", "/api/v10/{path:.+}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._pump = asyncio.create_task(self._send_events())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def fail_next(self, method: str, path_part: str, retry_after: float) -> None:
        """Answer the next ``method`` call whose path contains ``path_part`` with 429 and this ``retry_after``."""
        self._fail.setdefault(f"{method} {path_part}", []).append(retry_after)

    def block(self, user: DcUser) -> None:
        """The user blocked the bot: posting or editing in their DM answers 403 with code 50007, as Discord's does."""
        self.blocked.add(user.dm)

    # The gateway.

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_json({"op": 10, "d": {"heartbeat_interval": 45_000}})
        async for frame in socket:
            if frame.type != WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if message["op"] == 1:
                await socket.send_json({"op": 11})
            elif message["op"] == 2:
                self.identified.append(message["d"])
                if message["d"]["token"] != self.token:
                    await socket.close(code=4004)
                    break
                self._seq += 1
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "guilds": [],
                    "session_id": f"s{len(self.identified)}",
                    "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(APP_ID), "flags": 0},
                }
                await socket.send_json({"op": 0, "t": "READY", "s": self._seq, "d": ready})
                self._sockets.add(socket)
                await self.notify()
        self._sockets.discard(socket)
        return socket

    async def _send_events(self) -> None:
        while True:
            event, data = await self._outbox.get()
            while not self._sockets:  # a bot restarting: the event waits for it, as Discord's would
                await asyncio.sleep(0.05)
            self._seq += 1
            for socket in list(self._sockets):
                with contextlib.suppress(ConnectionError):
                    await socket.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    @property
    def connections(self) -> int:
        return len(self._sockets)

    # Attachments.

    async def _cdn(self, request: web.Request) -> web.Response:
        attachment_id = int(request.match_info["id"])
        if attachment_id not in self.attachments:
            return web.Response(status=404)
        self.downloads.append(attachment_id)
        return web.Response(body=self.attachments[attachment_id][1])

    # REST.

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body, files = await _read_body(request)
        call = Call(request.method, path, body, time.monotonic())
        self.calls.append(call)
        try:
            if (
                not path.startswith(("/interactions/", "/webhooks/"))
                and request.headers.get("Authorization") != f"Bot {self.token}"
            ):
                call.status = 401
                return _json({"message": "401: Unauthorized", "code": 0}, 401)
            waits = next(
                (
                    v
                    for k, v in self._fail.items()
                    if v and k.split(" ", 1)[0] == request.method and k.split(" ", 1)[1] in path
                ),
                None,
            )
            if waits:
                call.status = 429
                retry_after = waits.pop(0)
                headers = {**_JSON, "Via": "1.1 google"}  # discord.py treats a 429 without Via as a Cloudflare ban
                body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                return web.Response(status=429, body=json.dumps(body).encode(), headers=headers)
            parts = path.split("/")[1:]
            if parts[:1] == ["channels"] and len(parts) > 2 and int(parts[1]) in self.blocked:
                call.status = 403
                return _json({"message": "Cannot send messages to this user", "code": 50007}, 403)
            result = self._route(request.method, parts, body, files)
            if result is None:
                self.unknown.append(f"{request.method} {path}")
                call.status = 404
                return _json({"message": "404: Not Found", "code": 0}, 404)
            return _json(result)
        finally:
            await self.notify()

    def _route(self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes]]) -> Any:
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
                self.commands = body
                return [
                    {**command, "id": str(900 + n), "application_id": str(APP_ID), "version": "1"}
                    for n, command in enumerate(body)
                ]
            case "POST", ["users", "@me", "channels"]:
                user = DcUser(int(body["recipient_id"]), "someone")
                return {"id": str(user.dm), "type": 1, "recipients": [user.json()], "last_message_id": None}
            case "POST", ["channels", channel_id, "messages"]:
                sent = self.post(int(channel_id), body.get("content") or "", body.get("components") or [], files)
                return self.message_json(sent)
            case "PATCH", ["channels", _, "messages", message_id]:
                return self._edit(self.sent[int(message_id)], body)
            case "POST", ["interactions", interaction_id, token, "callback"]:
                return self._callback(int(interaction_id), token, body)
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                original = next(sent for sent in self.sent.values() if sent.interaction_token == token)
                return self._edit(original, body)
            case "POST", ["webhooks", _, token]:
                original = next(sent for sent in self.sent.values() if sent.interaction_token == token)
                sent = self.post(
                    original.channel_id,
                    body.get("content") or "",
                    [],
                    files,
                    ephemeral=bool(body.get("flags", 0) & _EPHEMERAL),
                )
                return self.message_json(sent)
        return None

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
        answer.update(
            response_message_id=str(sent.id), response_message_loading=kind == 5, response_message_ephemeral=ephemeral
        )
        return {"interaction": answer, "resource": {"type": kind, "message": self.message_json(sent)}}

    def _interaction_owner(self, interaction_id: int) -> tuple[int, int]:
        for event, data in self.dispatched:
            if event == "INTERACTION_CREATE" and int(data["id"]) == interaction_id:
                user = data.get("user") or data["member"]["user"]
                return int(user["id"]), int(data["channel_id"])
        raise KeyError(f"no interaction {interaction_id} was dispatched")


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """JSON, or multipart with ``payload_json`` and ``files[n]`` parts, as discord.py sends them."""
    if not request.can_read_body:
        return {}, []
    if request.content_type != "multipart/form-data":
        return await request.json(), []
    body: Any = {}
    files: list[tuple[str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader), "discord.py sends flat multipart"
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            files.append((part.filename or "", bytes(await part.read())))
    return body, files


def _json(result: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(result).encode(), headers=_JSON)
