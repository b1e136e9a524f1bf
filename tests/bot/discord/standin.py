"""A local stand-in of Discord (aiohttp): the real discord.py talks real HTTP and a real gateway websocket to it.

REST under ``/api/v10`` (the routes the bot calls), the gateway at ``/gateway`` (HELLO -> IDENTIFY -> READY,
heartbeats acked, then the events the test dispatches) and attachments at ``/cdn``. Every call is recorded; a route
the stand-in lacks answers 404 and is listed in ``unknown``, which fails the test at teardown.

Truthful where the bot's behaviour depends on it (the routes themselves: ``routes.py``): an event dispatched while
no gateway session is open is dropped (Discord replays missed events only on RESUME, and a restarted bot IDENTIFYs
anew); an upload over the per-file limit or over 25 MiB per request is refused with 413/40005.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.bot.discord.routes import DiscordRoutes, Refused
from tests.bot.discord.world import APP_ID, BOT_USER, UPLOAD_LIMIT, Call, DcUser, Sent

__all__ = ["BOT_USER", "DcUser", "DiscordStandin", "Sent"]

_JSON = {"Content-Type": "application/json"}  # exactly: discord.py decodes JSON only for this header
REQUEST_LIMIT = 25 * 2**20  # "maximum request size when sending a message is 25 MiB" (resources/message.mdx)
_CANNOT_MESSAGE = {
    50007: "Cannot send messages to this user",
    50278: "Cannot send messages to this user due to having no mutual guilds",
}


@dataclass
class _Fault:
    method: str
    path_part: str
    status: int
    body: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path_part in path


class DiscordStandin(DiscordRoutes):
    def __init__(self, token: str) -> None:
        super().__init__(lambda: f"http://127.0.0.1:{self.port}/cdn")
        self.token = token
        self.unknown: list[str] = []
        self.identified: list[dict[str, Any]] = []
        self.dropped: list[tuple[str, dict[str, Any]]] = []  # events dispatched while no session was open
        self.disconnected: list[float] = []  # when each gateway session ended (time.monotonic)
        self.blocked: dict[int, int] = {}  # DM channel id -> the error code a post or edit there answers
        self._faults: list[_Fault] = []
        self._delays: list[tuple[str, str, float]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._pump: asyncio.Task[None] | None = None
        self.port = 0

    # Server lifecycle.

    async def start(self) -> None:
        app = web.Application(client_max_size=80 * 2**20)
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

    # Faults a test asks for.

    def fail_next(self, method: str, path_part: str, retry_after: float) -> None:
        """Answer the next ``method`` call whose path contains ``path_part`` with 429 and this ``retry_after``."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        self._faults.append(_Fault(method, path_part, 429, body))

    def refuse_next(self, method: str, path_part: str, status: int, code: int, message: str) -> None:
        """Answer the next ``method`` call whose path contains ``path_part`` with this Discord error."""
        self._faults.append(_Fault(method, path_part, status, {"message": message, "code": code}))

    def delay(self, method: str, path_part: str, seconds: float) -> None:
        """Hold every matching call this long before answering (a slow Discord, to catch a call in flight)."""
        self._delays.append((method, path_part, seconds))

    def block(self, user: DcUser, code: int = 50007) -> None:
        """Posting or editing in the user's DM answers 403 with ``code``: 50007 when they blocked the bot or closed
        their DMs, 50278 when a user install shares no server with the bot."""
        self.blocked[user.dm] = code

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
                self._sockets.add(socket)  # before READY: once the bot says it is up, events reach it
                await socket.send_json({"op": 0, "t": "READY", "s": self._seq, "d": ready})
                await self.notify()
        self._sockets.discard(socket)
        self.disconnected.append(time.monotonic())
        await self.notify()
        return socket

    async def _send_events(self) -> None:
        while True:
            event, data = await self._outbox.get()
            sessions = [socket for socket in self._sockets if not socket.closed]
            if not sessions:
                # Discord replays missed events only to a session that RESUMEs; a new one (IDENTIFY) never sees it.
                self.dropped.append((event, data))
                continue
            self._seq += 1
            for socket in sessions:
                with contextlib.suppress(ConnectionError):
                    await socket.send_json({"op": 0, "t": event, "s": self._seq, "d": data})

    @property
    def connections(self) -> int:
        return len([socket for socket in self._sockets if not socket.closed])

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
            for method, part, seconds in self._delays:
                if method == request.method and part in path:
                    await asyncio.sleep(seconds)
            fault = next((fault for fault in self._faults if fault.matches(request.method, path)), None)
            if fault is not None:
                self._faults.remove(fault)
                call.status = fault.status
                # discord.py treats a 429 without Via as a Cloudflare ban
                headers = {**_JSON, "Via": "1.1 google"} if fault.status == 429 else _JSON
                return web.Response(status=fault.status, body=json.dumps(fault.body).encode(), headers=headers)
            parts = path.split("/")[1:]
            try:
                _check_uploads(files)
                if request.method in ("POST", "PATCH") and parts[:1] == ["channels"] and len(parts) > 2:
                    code = self.blocked.get(int(parts[1]))
                    if code is not None:
                        raise Refused(403, code, _CANNOT_MESSAGE[code])
                result = self.route(request.method, parts, request.query, body, files)
            except Refused as refused:
                call.status = refused.status
                return _json({"message": refused.message, "code": refused.code}, refused.status)
            if result is None:
                self.unknown.append(f"{request.method} {path}")
                call.status = 404
                return _json({"message": "404: Not Found", "code": 0}, 404)
            return _json(result)
        finally:
            await self.notify()


def _check_uploads(files: list[tuple[str, bytes]]) -> None:
    """Discord's upload limits: each attachment under the limit the interaction payload names, 25 MiB per request."""
    if any(len(data) > UPLOAD_LIMIT for _, data in files) or sum(len(data) for _, data in files) > REQUEST_LIMIT:
        raise Refused(413, 40005, "Request entity too large")


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
