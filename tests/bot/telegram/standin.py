"""A local stand-in of the Telegram Bot API (aiohttp): the real PTB talks real HTTP to it, as to api.telegram.org.

It serves the ``ChatWorld`` (chats, the bot's messages edited in place, files, an update queue) through the Bot API
methods the bot calls, and records every call. Updates go out as the bot asked: by ``getUpdates`` long polling, or
POSTed to its webhook with its secret token once it called ``setWebhook``; either way only the types in its
``allowed_updates``. A method the bot calls that is missing here answers 404, which PTB reports as ``InvalidToken``;
``unknown`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, web

from tests.bot.telegram.chats import BOT_USER, Call, ChatWorld, Sent, TgUser

__all__ = ["BOT_USER", "BotApiStandin", "Sent", "TgUser", "Webhook"]

# Telegram's limits, in decimal megabytes as PTB reads them (whether the server counts 2^20 is not documented).
DOWNLOAD_LIMIT = 20_000_000
PHOTO_LIMIT = 10_000_000
DOCUMENT_LIMIT = 50_000_000
_JSON_PARAMS = {"reply_markup", "media", "allowed_updates", "commands", "scope", "reply_parameters"}
# What a bot gets when it never named the types it wants (https://core.telegram.org/bots/api#getupdates).
_DEFAULT_EXCLUDED = {"chat_member", "message_reaction", "message_reaction_count"}
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class Webhook:
    """What the bot's last ``setWebhook`` asked for."""

    url: str
    secret_token: str | None
    allowed_updates: list[str] | None


class BotApiStandin(ChatWorld):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.unknown: list[str] = []
        self.allowed_updates: list[str] | None = None
        self.commands: list[dict[str, str]] = []
        self.commands_scope: dict[str, Any] | None = None
        self.webhook: Webhook | None = None
        # Where Telegram's webhook POSTs reach the bot: the TLS proxy in front of it, which the tests play.
        self.webhook_proxy: str | None = None
        self._fail: dict[str, list[int]] = {}
        self._slow: dict[str, float] = {}
        self._fail_once: dict[str, tuple[int, int, str]] = {}  # method -> (calls let through first, status, text)
        self._refused: dict[int, tuple[int, str]] = {}  # chat id -> (status, description) for every call to it
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self.port = 0

    # Server lifecycle.

    async def start(self) -> None:
        app = web.Application(client_max_size=60 * 2**20)  # 50 MB uploads, as the real API takes
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)  # its URLs hold the token; the bot's log is under test
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # Flood control, on demand.

    def fail_next(self, method: str, retry_after: int) -> None:
        """Answer the next call of ``method`` with 429 Too Many Requests and this ``retry_after``."""
        self._fail.setdefault(method, []).append(retry_after)

    def fail_call(self, method: str, *, after: int, code: int, description: str) -> None:
        """Let ``after`` more calls of ``method`` through, then answer the next one with this error, once."""
        self._fail_once[method] = (after, code, description)

    def slow(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` this much later, its work done first (a photo is posted, then the answer
        is late: a client that gives up sooner sees an error for a message that was sent)."""
        self._slow[method] = seconds

    # Chats that refuse the bot, as Telegram answers.

    async def block(self, user: TgUser, *, tell_bot: bool = True) -> None:
        """The user blocked the bot: every call to their chat answers 403, as Telegram's does, and the bot gets a
        ``my_chat_member`` update (status ``kicked``). ``tell_bot=False``: that update has not reached it yet."""
        self.fail_chat(user, 403, "Forbidden: bot was blocked by the user")
        if tell_bot:
            await self._bot_membership(user, "member", "kicked")

    async def unblock(self, user: TgUser) -> None:
        """The user unblocked the bot (or pressed Start again): their chat takes messages, and the bot is told."""
        self.reopen(user)
        await self._bot_membership(user, "kicked", "member")

    def fail_chat(self, user: TgUser, code: int, description: str) -> None:
        """Answer every call to the user's chat with this error (e.g. 502 Bad Gateway), until ``reopen``."""
        self._refused[user.id] = (code, description)

    def reopen(self, user: TgUser) -> None:
        self._refused.pop(user.id, None)

    # The Bot API.

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = Call(method, params, files, time.monotonic())
        self.calls.append(call)
        try:
            response = await self._answer(method, params, files, call)
            await asyncio.sleep(self._slow.get(method, 0))
            return response
        finally:
            call.answered_at = time.monotonic()
            async with self._changed:
                self._changed.notify_all()

    async def _answer(self, method: str, params: dict[str, Any], files: dict[str, bytes], call: Call) -> web.Response:
        if self._fail.get(method):
            retry_after = self._fail[method].pop(0)
            call.status = 429
            return _error(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        if method in self._fail_once:
            after, code, description = self._fail_once[method]
            if after == 0:
                del self._fail_once[method]
                call.status = code
                return _error(code, description)
            self._fail_once[method] = (after - 1, code, description)
        refused = self._refused.get(int(params.get("chat_id") or 0))
        if refused is not None:
            call.status = refused[0]
            return _error(*refused)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            self.unknown.append(method)
            return _error(404, "Not Found")
        if method == "getUpdates":
            if self.webhook is not None:
                call.status = 409
                return _error(409, "Conflict: can't use getUpdates method while webhook is active")
            return _ok(await self._m_getUpdates(params))
        try:
            return _ok(handler(params, files))
        except _BadRequest as error:
            call.status = 400
            return _error(400, f"Bad Request: {error}")

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        if params.get("allowed_updates") is not None:
            self.allowed_updates = params["allowed_updates"]
        self._updates = [update for update in self._updates if update["update_id"] >= offset]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        async with self._changed:
            while not self._deliverable() and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
        return list(self._deliverable()[: int(params.get("limit") or 100)])

    def _deliverable(self) -> list[dict[str, Any]]:
        """The queued updates of the types the bot asked for; Telegram never sends it the others, so they go."""

        def wanted(update: dict[str, Any]) -> bool:
            kind = next(key for key in update if key != "update_id")
            if self.allowed_updates is None:  # never said: Telegram's default set
                return kind not in _DEFAULT_EXCLUDED
            return not self.allowed_updates or kind in self.allowed_updates  # [] means every type

        self._updates = [update for update in self._updates if wanted(update)]
        return self._updates

    # Webhook mode.

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = Webhook(params["url"], params.get("secret_token"), params.get("allowed_updates"))
        if self.webhook.allowed_updates is not None:
            self.allowed_updates = self.webhook.allowed_updates
        if self.webhook_proxy is not None and (self._webhook_task is None or self._webhook_task.done()):
            self._webhook_task = asyncio.get_running_loop().create_task(self._post_updates())
        return True

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = self.webhook.url if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def post_to_webhook(self, update: dict[str, Any], secret: str | None) -> int:
        """POST ``update`` to the bot's webhook as anyone could, with ``secret`` in the secret-token header (none:
        no header); returns the HTTP status the bot answered."""
        assert self.webhook_proxy is not None, "set webhook_proxy to where the bot's webhook server listens"
        async with ClientSession() as session:
            return await self._post_update(session, {"update_id": next(self._update_ids), **update}, secret)

    async def _post_updates(self) -> None:
        """Telegram's side of a webhook: the updates in order, each POSTed until the bot answers 200."""
        async with ClientSession() as session:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: self.webhook is None or bool(self._deliverable()))
                if self.webhook is None:
                    return
                update = self._updates[0]
                if await self._post_update(session, update, self.webhook.secret_token) == 200:
                    self._updates.remove(update)
                else:
                    await asyncio.sleep(0.1)  # the bot is restarting, or refused: Telegram tries again later

    async def _post_update(self, session: ClientSession, update: dict[str, Any], secret: str | None) -> int:
        assert self.webhook_proxy is not None
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        try:
            async with session.post(self.webhook_proxy, json=update, headers=headers) as response:
                return response.status
        except ClientError:
            return 0  # nothing listens (yet)

    def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return BOT_USER

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.commands = params["commands"]
        self.commands_scope = params.get("scope")
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if not params.get("text"):
            raise _BadRequest("message text is empty")
        return self._message_json(self._post(params, "text", params["text"]))

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        sent = self.sent.get((int(params["chat_id"]), int(params["message_id"])))
        if sent is None:
            raise _BadRequest("message to edit not found")
        keyboard = (params.get("reply_markup") or {}).get("inline_keyboard", [])
        if sent.text == params["text"] and sent.keyboard == keyboard:
            raise _BadRequest(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message"
            )
        sent.text, sent.keyboard = params["text"], keyboard
        sent.history.append((time.monotonic(), sent.text))
        return self._message_json(sent)

    def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        data = _attached(params.get("photo", ""), files, "photo")
        _check_size(data, PHOTO_LIMIT, "photo")
        return self._message_json(self._post(params, "photo", params.get("caption", ""), data))

    def _m_sendDocument(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        data = _attached(params.get("document", ""), files, "document")
        _check_size(data, DOCUMENT_LIMIT, "document")
        return self._message_json(self._post(params, "document", params.get("caption", ""), data))

    def _m_sendMediaGroup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        media = params["media"]
        if not 2 <= len(media) <= 10:
            raise _BadRequest("wrong number of media: must include 2-10 items")
        group = f"g{next(self._ids)}"
        posted = []
        for item in media:
            data = _attached(item["media"], files, "media")
            kind = item["type"]
            posted.append(self._post(params, kind, item.get("caption", ""), data, media_group_id=group))
        return [self._message_json(sent) for sent in posted]

    def _m_getFile(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        file_id = params["file_id"]
        if file_id not in self._files:
            raise _BadRequest("invalid file_id")
        data, size = self._files[file_id]
        if size > DOWNLOAD_LIMIT:
            raise _BadRequest("file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": size,
            "file_path": f"photos/{file_id}",
        }

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["path"].rsplit("/", 1)[-1]
        if request.match_info["token"] != self.token or file_id not in self._files:
            return _error(404, "Not Found")
        return web.Response(body=self._files[file_id][0])

    def _post(
        self,
        params: dict[str, Any],
        kind: str,
        text: str,
        data: bytes | None = None,
        *,
        media_group_id: str | None = None,
    ) -> Sent:
        chat_id = int(params["chat_id"])
        keyboard = (params.get("reply_markup") or {}).get("inline_keyboard", [])
        sent = Sent(
            chat_id,
            self._next_message_id(chat_id),
            kind,
            text,
            keyboard,
            data,
            media_group_id=media_group_id,
            history=[(time.monotonic(), text)],
        )
        self.sent[(chat_id, sent.message_id)] = sent
        return sent


class _BadRequest(Exception):
    pass


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Form-encoded or multipart, as PTB sends them: JSON-typed fields decoded, files apart."""
    form = await request.post()
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            files[name] = value.file.read()
        elif name in _JSON_PARAMS:
            params[name] = json.loads(str(value))
        else:
            params[name] = str(value)
    return params, files


def _attached(value: str, files: dict[str, bytes], name: str) -> bytes:
    """A file as a request carries it: ``attach://<part>`` or the part named like the parameter."""
    part = value[len("attach://") :] if isinstance(value, str) and value.startswith("attach://") else name
    if part not in files:
        raise _BadRequest(f"there is no file in the request for {name}")
    return files[part]


def _check_size(data: bytes, limit: int, what: str) -> None:
    if len(data) > limit:
        raise _BadRequest(f"{what} is too big: {len(data)} bytes, at most {limit}")


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)
