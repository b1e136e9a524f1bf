"""The platform-free bot: commands, selfies and reactions in; replies out through a ``ChatPort``."""

from __future__ import annotations

import logging

from bot.core import session as transitions
from bot.core import texts
from bot.core.context import CoreContext
from bot.core.erase import erase_user
from bot.core.look_choice import parse_headshot
from bot.core.previews import preview_session, render_from_selfies
from bot.core.ratelimit import RateLimiter
from bot.core.rendering import ACTIONS, check_can_render, render_headshots, start_action
from bot.core.session import JobStatus, SessionState, state_of
from bot.core.subject_choice import described, parse_words, subject_intro, subject_needs_new, subject_reply
from bot.core.takeaway import export_lora, favorites_zip
from bot.core.training import add_selfies, start_training
from bot.core.types import ChatPort, ChatRef, IncomingMessage, OutgoingImage, Reply
from bot.store.schema import SessionRow
from jobs.contract.kinds import JobKind
from jobs.logging_setup import log_context
from pipeline.errors import SessionError, UnknownStyle, UserInputError
from pipeline.safety.text import check_words
from pipeline.styles import resolve_style
from pipeline.subject import Subject

__all__ = ["HeadshotService"]

log = logging.getLogger(__name__)


def _screen_style_words(args: str) -> None:
    """Words that name no preset are the user's own, screened before anything else: refused words get the same
    answer in every state of the session, and a single refused word is not echoed back as a style name."""
    try:
        resolve_style(args)
    except UnknownStyle:
        check_words(args)


class HeadshotService:
    """Handles one user's message or reaction at a time (per-user lock); users proceed in parallel."""

    def __init__(self, core: CoreContext) -> None:
        self.core = core
        self._delete_pending: set[str] = set()
        self.limiter = RateLimiter(core.settings.rate_limit_burst, core.settings.rate_limit_per_s)

    async def admit(self, chat: ChatRef, port: ChatPort) -> bool:
        """False for a message past the user's rate limit: the first of a flood gets "slow down", the rest nothing.

        Adapters call it before downloading a message's attachments (then ``handle_message(..., admitted=True)``),
        so a flood costs no downloads; stickers, voice and the like count as messages too.
        """
        verdict = self.limiter.check(chat.user_key)
        if verdict.warn:
            await port.send(chat.chat_id, Reply(texts.SLOW_DOWN))
        return verdict.allowed

    async def handle_message(self, message: IncomingMessage, port: ChatPort, *, admitted: bool = False) -> None:
        chat = message.chat
        if not admitted and not await self.admit(chat, port):
            return
        if not chat.is_private:
            # Nothing from a group is stored, not even the user row.
            await port.send(chat.chat_id, Reply(texts.PRIVATE_ONLY))
            return
        async with self.core.locks.hold(chat.user_key), log_context(user_key=chat.user_key):
            try:
                await self.core.store.ensure_user(chat.user_key, chat.platform, chat.chat_id)
                await self._dispatch(message, port)
            except UserInputError as error:
                await port.send(chat.chat_id, Reply(texts.explain(error)))
            except Exception:
                log.exception("handling a message from %s failed", chat.user_key)
                await port.send(chat.chat_id, Reply(texts.INTERNAL_ERROR))

    async def handle_reaction(self, chat: ChatRef, message_id: str, port: ChatPort) -> None:
        """A reaction on one of our messages: on a headshot it marks a favorite."""
        if not chat.is_private or not await self.admit(chat, port):
            return
        async with self.core.locks.hold(chat.user_key), log_context(user_key=chat.user_key):
            image = await self.core.store.image_by_message(chat.user_key, message_id)
            if image is None:
                # Any emoji on any message (a selfie, a "model ready" note) reaches us: only a headshot means a
                # favorite, and a reply to every other reaction would be noise.
                return
            await self._mark_favorite(chat, image.id, port)

    async def user_left(self, chat: ChatRef) -> None:
        """The user blocked the bot (or deleted the chat): their open job is given up and nothing is sent until they
        write again. Their data stays until retention or ``/delete``, as anyone's does."""
        async with self.core.locks.hold(chat.user_key), log_context(user_key=chat.user_key):
            if not await self.core.store.mark_left(chat.user_key):
                return  # never wrote to us: nothing is kept of them
            ended = await transitions.all_undeliverable(self.core.store, chat.user_key)
            for job in ended:
                await self.core.queue.request_abort(job.job_id)
            log.info("user left the chat; %d open job(s) ended", len(ended))

    async def user_returned(self, chat: ChatRef) -> None:
        """The user unblocked the bot: the chat reaches them again (writing to us does the same)."""
        async with self.core.locks.hold(chat.user_key):
            await self.core.store.mark_left(chat.user_key, left=False)

    async def _mark_favorite(self, chat: ChatRef, image_id: int, port: ChatPort) -> None:
        store = self.core.store
        if not await store.add_favorite(chat.user_key, image_id):
            await port.send(chat.chat_id, Reply(texts.FAVORITE_ALREADY))
            return
        total = len(await store.favorites(chat.user_key))
        number = [row.id for row in await store.images(chat.user_key)].index(image_id) + 1
        await port.send(chat.chat_id, Reply(texts.FAVORITE_ADDED.format(number=number, total=total)))

    async def _dispatch(self, message: IncomingMessage, port: ChatPort) -> None:
        chat = message.chat
        command, _, args = message.text.strip().partition(" ")
        # Telegram appends the bot's name in groups ("/train@HeadshotBot"); commands are case-insensitive.
        command = command.split("@", 1)[0].lower()
        args = args.strip()
        session = await self.core.store.current_session(chat.user_key)
        if command != "/delete":
            self._delete_pending.discard(chat.user_key)
        if not message.attachments:
            self.core.selfie_status.close(chat.user_key)  # a command in between: the next photo starts a new status

        if not command.startswith("/"):
            if message.attachments:
                await self._train(chat, session, "", message, port)
            else:
                await port.send(chat.chat_id, Reply(texts.HELP))
            return
        handlers = {
            "/start": self._help,
            "/help": self._help,
            "/styles": self._styles,
            "/status": self._status,
            "/cancel": self._cancel,
            "/favorites": self._favorites,
        }
        if command == "/train":
            await self._train(chat, session, args, message, port)
        elif command == "/export" or (command == "/favorites" and args):
            await self._take_home(chat, session, command, args, port)
        elif command == "/headshot":
            await self._headshot(chat, session, args, port)
        elif command == "/delete":
            await self._delete(chat, args, port)
        elif command == "/favorite":
            await self._favorite(chat, args, port)
        elif command in ACTIONS:
            await start_action(self.core, chat, session, command, args, port)
        elif command in handlers:
            await handlers[command](chat, session, port)
        else:
            raise SessionError(texts.UNKNOWN_COMMAND.format(command=texts.clip(command)))

    async def _train(
        self, chat: ChatRef, session: SessionRow | None, args: str, message: IncomingMessage, port: ChatPort
    ) -> None:
        settings = self.core.settings
        store = self.core.store
        if args.lower() == "start":
            await start_training(self.core, chat, session, port)
            return
        # "/train new woman 30s": start over described so; "/train woman 30s": change the description.
        first, _, rest = args.partition(" ")
        new = first.lower() == "new"
        words = rest.strip() if new else args
        state = state_of(session)
        if state == SessionState.TRAINING:
            refusal = texts.TRAIN_ALREADY_RUNNING if not words else texts.SUBJECT_WHILE_TRAINING
            raise SessionError(
                texts.SELFIE_WHILE_TRAINING if message.attachments else refusal.format(described=described(session))
            )
        if state.has_model and not new:
            if words and not message.attachments and session is not None:
                raise subject_needs_new(session, words)
            raise SessionError(texts.SELFIE_WHEN_READY if message.attachments else texts.TRAIN_ALREADY_DONE)
        if session is None or state in (SessionState.NEW, SessionState.READY, SessionState.GENERATING):
            subject = parse_words(words, session.subject if session else Subject())
            session = await transitions.open_session(store, chat.user_key, subject)
            intro = texts.TRAIN_INTRO.format(needed=settings.min_selfies, maximum=settings.max_selfies)
            if not message.attachments:
                await port.send(chat.chat_id, subject_intro(intro, session, chosen=bool(words)))
                return
        elif words:
            session = await transitions.subject_chosen(store, session, parse_words(words, session.subject))
            if not message.attachments:
                count = len(await store.selfie_keys(chat.user_key, session.id))
                await port.send(chat.chat_id, subject_reply(session, count >= settings.min_selfies))
                return
        elif not message.attachments:
            count = len(await store.selfie_keys(chat.user_key, session.id))
            line = texts.selfie_count_line(count, settings.min_selfies, settings.max_selfies)
            buttons = (texts.START_BUTTON,) if count >= settings.min_selfies else ()
            await port.send(chat.chat_id, Reply(line, buttons))
            return
        await add_selfies(self.core, chat, session, message.attachments, port)

    async def _headshot(self, chat: ChatRef, session: SessionRow | None, args: str, port: ChatPort) -> None:
        _screen_style_words(args)
        # No model yet, but selfies and a worker that renders from them: the style from the selfies (a preview).
        previewing = await preview_session(self.core, session)
        target = previewing or await check_can_render(
            self.core, chat, session, lambda style: texts.HEADSHOT_BUSY.format(style=style)
        )
        # A preset or the user's own words, then backdrop, outfit and aspect; what is still to choose is asked.
        wanted = parse_headshot(args)
        if wanted.asking is not None:
            await port.send(chat.chat_id, wanted.reply())
            return
        style = wanted.style()
        if previewing is not None:
            await render_from_selfies(self.core, chat, previewing, style, port)
            return

        await render_headshots(self.core, chat, target, style, port, count=self.core.settings.headshots_per_request)

    async def _help(self, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
        await port.send(chat.chat_id, Reply(texts.HELP))

    async def _styles(self, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
        await port.send(chat.chat_id, Reply(texts.styles_text()))

    async def _status(self, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
        settings = self.core.settings
        state = state_of(session)
        selfies = None
        if session is not None and state == SessionState.COLLECTING:
            count = len(await self.core.store.selfie_keys(chat.user_key, session.id))
            selfies = texts.selfie_count_line(count, settings.min_selfies, settings.max_selfies)
        active = await self.core.store.active_job(chat.user_key)
        job = None
        if active is not None:
            job = (active.kind, await self.core.queue.position(active.job_id))
        headshots = len(await self.core.store.images(chat.user_key))
        text = texts.status_text(state, selfies, job, headshots)
        await port.send(chat.chat_id, Reply("\n".join([text, *await self._status_extra(chat, session)])))

    async def _status_extra(self, chat: ChatRef, session: SessionRow | None) -> list[str]:
        """``/status``'s lines about who the pictures show and what today's quotas leave."""
        lines = [texts.SUBJECT_STATUS.format(described=described(session))] if session is not None else []
        return lines + (await self.core.quotas.usage(chat.user_key)).lines()

    async def _cancel(self, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
        # Every open job: a training and the preview queued with it are stopped together.
        jobs = await self.core.store.open_jobs(chat.user_key)
        if not jobs or session is None:
            raise SessionError(texts.CANCEL_NOTHING)
        for job in jobs:
            await self.core.queue.request_abort(job.job_id)
            await transitions.job_ended(self.core.store, job, JobStatus.CANCELLED)
        training = any(job.kind == JobKind.TRAIN for job in jobs)
        cancelled = texts.CANCELLED_TRAINING if training else texts.CANCELLED_RENDERING
        await port.send(chat.chat_id, Reply(cancelled))

    async def _favorites(self, chat: ChatRef, session: SessionRow | None, port: ChatPort) -> None:
        favorites = await self.core.store.favorites(chat.user_key)
        if not favorites:
            await port.send(chat.chat_id, Reply(texts.FAVORITES_EMPTY))
            return
        files = [
            OutgoingImage(row.storage_key.rsplit("/", 1)[-1], await self.core.storage.get(row.storage_key))
            for row in favorites
        ]
        await port.send(chat.chat_id, Reply(texts.FAVORITES_SENT.format(count=len(files))))
        await port.send_files(chat.chat_id, files)

    async def _take_home(
        self, chat: ChatRef, session: SessionRow | None, command: str, args: str, port: ChatPort
    ) -> None:
        """``/favorites zip`` and ``/export`` (bot/core/takeaway.py)."""
        if command == "/export":
            await export_lora(self.core, chat, session, port)
        elif args.lower() == "zip":
            await favorites_zip(self.core, chat, port)
        else:
            raise SessionError(texts.FAVORITES_ARGS.format(args=texts.clip(args)))

    async def _favorite(self, chat: ChatRef, args: str, port: ChatPort) -> None:
        """``/favorite <n>``: the same as a reaction on headshot #n; the buttons under each batch send it."""
        images = await self.core.store.images(chat.user_key)
        number = args.lstrip("#")
        if not number.isdecimal() or not 1 <= int(number) <= len(images):
            raise SessionError(
                texts.FAVORITE_NO_SUCH.format(number=texts.clip(args) or "?", count=len(images))
                if images
                else texts.FAVORITE_NO_HEADSHOTS
            )
        await self._mark_favorite(chat, images[int(number) - 1].id, port)

    async def _delete(self, chat: ChatRef, args: str, port: ChatPort) -> None:
        if args.lower() != "confirm":
            self._delete_pending.add(chat.user_key)
            await port.send(chat.chat_id, Reply(texts.DELETE_CONFIRM, texts.DELETE_BUTTONS))
            return
        if chat.user_key not in self._delete_pending:
            raise SessionError(texts.DELETE_NOTHING_PENDING)
        self._delete_pending.discard(chat.user_key)
        await erase_user(self.core, chat.user_key)
        self.limiter.forget(chat.user_key)
        await port.send(chat.chat_id, Reply(texts.DELETE_DONE))
