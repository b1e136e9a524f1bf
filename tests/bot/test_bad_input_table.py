"""The bad-input table: every case gets a clear reply naming the problem, no crash, and the session data is kept.

Each case starts the user in a state (``new``, ``collecting`` with one selfie, or ``ready`` with a trained session,
two headshots and one favorite), sends its lines through the local chat, and checks the reply and that the state,
selfie count, headshots, favorites and queue are what they were (plus the selfies a good-but-odd file adds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.core import texts
from bot.core.ratelimit import RateLimiter
from bot.core.session import SessionState
from bot.local.chat import LocalChat
from jobs.settings import Settings
from tests.bot.bad_files import make_bad_files
from tests.bot.flows import seed_ready
from tests.harness import Harness

NEW, COLLECTING, READY = "new", "collecting", "ready"
LONG = "word " * 820  # about 4 KB
HUGE_WORD = "x" * 4096


@dataclass(frozen=True)
class Case:
    given: str
    lines: tuple[str, ...]  # ``{name}`` is replaced by the path of that bad file
    expect: tuple[str, ...]  # every one appears in the bot's answer
    selfies_added: int = 0
    group: bool = False  # spoken in a group chat instead of the private one


def case(id_: str, given: str, line: str | tuple[str, ...], *expect: str, added: int = 0, group: bool = False):
    lines = (line,) if isinstance(line, str) else line
    return pytest.param(Case(given, lines, expect, added, group), id=id_)


REFUSED = "1 of 3 selfies accepted"  # the count line under a refusal: the one good selfie is still there
NOT_A_PHOTO = "not a photo I can read"
TOO_LARGE = "too large to process"

CASES = [
    # Files: not images, broken images, bombs and giants, odd names and formats.
    case("pdf", COLLECTING, "{resume.pdf}", "✗ resume.pdf", NOT_A_PHOTO, REFUSED),
    case("text-named-jpg", COLLECTING, "{notes.jpg}", "✗ notes.jpg", NOT_A_PHOTO, REFUSED),
    case("zero-bytes", COLLECTING, "{empty.jpg}", "✗ empty.jpg", "file is empty", REFUSED),
    case("truncated-jpeg", COLLECTING, "{cut.jpg}", "✗ cut.jpg", "cut off", REFUSED),
    case("truncated-png", COLLECTING, "{cut.png}", "✗ cut.png", "send it again", REFUSED),
    case("jpeg-header-only", COLLECTING, "{header-only.jpg}", "✗ header-only.jpg", NOT_A_PHOTO, REFUSED),
    case("decompression-bomb", COLLECTING, "{bomb.png}", "✗ bomb.png", TOO_LARGE, "(8000x8000)", REFUSED),
    case("huge-dimensions-png", COLLECTING, "{huge.png}", "✗ huge.png", TOO_LARGE, "under 40 megapixels"),
    case("huge-dimensions-gif", COLLECTING, "{huge.gif}", "✗ huge.gif", TOO_LARGE, REFUSED),
    case("endless-strip", COLLECTING, "{strip.gif}", "✗ strip.gif", "300x65535", "too long on one side", REFUSED),
    case("random-bytes", COLLECTING, "{noise.jpg}", "✗ noise.jpg", NOT_A_PHOTO, REFUSED),
    case("executable", COLLECTING, "{program.png}", "✗ program.png", NOT_A_PHOTO, REFUSED),
    case("svg", COLLECTING, "{vector.svg}", "✗ vector.svg", NOT_A_PHOTO, REFUSED),
    case("one-pixel", COLLECTING, "{dot.png}", "✗ dot.png", "only 1x1 pixels", "at least 256", REFUSED),
    case("over-upload-limit", COLLECTING, "{video.mp4}", "not sent", "over 50 MB"),
    case("bad-among-good", COLLECTING, "/train {noise.jpg} {photo.txt}", "✗ noise.jpg", "✓ photo.txt", added=1),
    # Good pixels whatever the name or container says: judged by content, kept as a still JPEG.
    case("jpeg-named-txt", COLLECTING, "{photo.txt}", "✓ photo.txt", "2 of 3", added=1),
    case("png-named-jpg", COLLECTING, "{really-png.jpg}", "✓ really-png.jpg", "2 of 3", added=1),
    case("animated-gif", COLLECTING, "{animated.gif}", "✓ animated.gif", "2 of 3", added=1),
    # Captions and plain text.
    case("unicode-caption", COLLECTING, "{photo.txt} 🙂 ünïcödé مرحبا 你好", "✓ photo.txt", added=1),
    case("4kb-caption", COLLECTING, "{photo.txt} " + LONG, "✓ photo.txt", added=1),
    case("4kb-text", READY, LONG, "I turn 10-20 selfies"),
    case("empty-text", COLLECTING, "   ", "/train start - train"),
    case("nul-bytes", NEW, "\x00\x00", "/help - this message"),
    case("emoji-only", READY, "🙂", "/headshot <style>"),
    # Styles.
    case("unknown-style", READY, "/headshot vaporwave", "no style called 'vaporwave'", "linkedin"),
    case("empty-style", READY, "/headshot", "Which style?", "/styles"),
    case("blank-style", READY, "/headshot      ", "Which style?"),
    case("emoji-style", READY, "/headshot 🦄", "no style called '🦄'", "describe the look"),
    case("4kb-style-word", READY, "/headshot " + HUGE_WORD, "no style called 'xxxx", "…'"),
    case("4kb-style-words", READY, "/headshot " + LONG, "characters long; keep it to 300"),
    case("invisible-style", READY, "/headshot \u200b \u200b", "style description is empty"),
    case("unknown-backdrop", READY, "/headshot linkedin backdrop:moon", "no backdrop called 'moon'", "office, studio"),
    case("unknown-outfit", READY, "/headshot navy tie outfit:cape", "no outfit called 'cape'", "suit, blazer"),
    case("unknown-aspect", READY, "/headshot studio aspect:16:9", "no aspect called '16:9'", "square, profile"),
    case("unknown-option", READY, "/headshot linkedin colour:red", "don't know the option 'colour:'", "backdrop:"),
    case("shouted-style", READY, "/HEADSHOT VAPORWAVE", "no style called 'VAPORWAVE'"),
    # Commands in the wrong state.
    case("headshot-before-train", NEW, "/headshot linkedin", "train your model first", "/train"),
    case("headshot-while-collecting", COLLECTING, "/headshot linkedin", "train your model first"),
    case("train-start-no-selfies", NEW, "/train start", "haven't sent any selfies"),
    case("train-start-too-few", COLLECTING, "/train start", "1 of the 3 selfies", "Send 2 more"),
    case("train-when-trained", READY, "/train", "model is trained", "/train new"),
    case("selfie-when-trained", READY, "{photo.txt}", "already trained", "/train new"),
    case("cancel-nothing-new", NEW, "/cancel", "nothing to cancel"),
    case("cancel-nothing-ready", READY, "/cancel", "nothing to cancel"),
    case("favorite-missing-number", READY, "/favorite 99", "no headshot #99", "you have 2"),
    case("favorite-zero", READY, "/favorite 0", "no headshot #0"),
    case("favorite-negative", READY, "/favorite -1", "no headshot #-1"),
    case("favorite-word", READY, "/favorite best", "no headshot #best"),
    case("favorite-empty", READY, "/favorite", "no headshot #?"),
    case("favorite-4kb-number", READY, "/favorite " + "9" * 4096, "no headshot #9999", "…"),
    case("favorite-without-headshots", COLLECTING, "/favorite 1", "no headshots yet"),
    case("react-on-text-message", READY, "react 1", "react works on headshots: #1 is not one"),
    case("react-on-missing-message", READY, "react 99999", "react works on headshots: #99999 is not one"),
    case("delete-confirm-unasked", READY, "/delete confirm", "nothing to confirm", "/delete first"),
    case("delete-confirm-after-other", READY, ("/delete", "/status", "/delete confirm"), "nothing to confirm"),
    # Unknown commands.
    case("unknown-command", READY, "/frobnicate", "don't know the command '/frobnicate'", "/help"),
    case("bare-slash", COLLECTING, "/", "don't know the command '/'"),
    case("fullwidth-command", NEW, "/ｓｔａｒｔ", "don't know the command '/ｓｔａｒｔ'"),
    case("zero-width-command", READY, "/tr\u200bain", "don't know the command '/tr\ufffdain'"),
    case("4kb-command", NEW, "/" + HUGE_WORD, "don't know the command '/xxx", "…'"),
    # Groups: refused, nothing stored, the private session untouched.
    case("group-command", NEW, "/train", "private chat", group=True),
    case("group-photo", COLLECTING, "{photo.txt}", "private chat", "never keep photos", group=True),
    case("group-delete", READY, "/delete confirm", "private chat", group=True),
]


async def _given(harness: Harness, given: str, selfie_dir: Path) -> None:
    if given == COLLECTING:
        await harness.say(f"/train {sorted(selfie_dir.iterdir())[0]}")
    elif given == READY:
        await seed_ready(harness, selfie_dir)


async def _snapshot(harness: Harness) -> dict[str, object]:
    store, user = harness.app.store, harness.chat.chat.user_key
    return {
        "state": await harness.session_state(),
        "selfies": await harness.selfie_count(),
        "images": [row.storage_key for row in await store.images(user)],
        "favorites": [row.id for row in await store.favorites(user)],
        "queued": await harness.app.pool.queued_jobs(queue_name=harness.settings.queue_name),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, selfie_dir: Path) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"), sorted(selfie_dir.iterdir())[-1])


@pytest.fixture
async def chat(settings: Settings, tmp_path: Path, redis: Redis) -> AsyncIterator[Harness]:
    """The local chat on a real store and Redis; no worker runs in this table, so no model is loaded."""
    async with Harness(settings, None, tmp_path / "out") as running:
        yield running


@pytest.mark.parametrize("bad", CASES)
async def test_bad_input(chat: Harness, selfie_dir: Path, files: dict[str, Path], bad: Case) -> None:
    harness = chat
    await _given(harness, bad.given, selfie_dir)
    before = await _snapshot(harness)

    speaker = LocalChat(harness.app.service, harness.port, harness.user, group="team-room") if bad.group else None
    answers = []
    for line in bad.lines:
        for name, path in files.items():
            line = line.replace("{" + name + "}", str(path))
        if speaker is None:
            answers.append(await harness.say(line))
        else:
            start = len(harness.lines)
            await speaker.say(line)
            answers.append("\n".join(harness.lines[start:]))
    answer = answers[-1]

    # 1. A clear reply: it names the problem, reads as no internal error, fits in one chat message.
    for expected in bad.expect:
        assert expected in answer, f"{expected!r} not in the reply:\n{answer}"
    assert texts.INTERNAL_ERROR not in answer
    assert 0 < len(answer) < 4096

    # 2. Nothing lost or changed, but for the good selfies a case adds.
    after = await _snapshot(harness)
    assert after["selfies"] == before["selfies"] + bad.selfies_added  # type: ignore[operator]
    before["selfies"] = after["selfies"]
    assert after == before
    if bad.group:
        assert not (harness.settings.resolved_storage_dir / "users" / "local%3Ateam-room").exists()


async def test_flood_is_answered_once_then_dropped_and_nothing_lost(
    chat: Harness, selfie_dir: Path, files: dict[str, Path]
) -> None:
    now = [1000.0]
    chat.app.service.limiter = RateLimiter(burst=4, per_second=1.0, clock=lambda: now[0])
    await _given(chat, COLLECTING, selfie_dir)  # spends 1 of the 4

    # 1. Twenty photos at once: three get through, the fourth gets one "slow down", the rest get nothing. The three
    #    are different photos (the same one again would be refused as a duplicate).
    others = sorted(selfie_dir.iterdir())[1:4]
    answers = [await chat.say(str(others[n] if n < len(others) else files["photo.txt"])) for n in range(20)]
    assert [bool(answer) for answer in answers] == [True] * 4 + [False] * 16
    assert "Slow down" in answers[3] and "Everything you sent before is kept" in answers[3]
    assert sum("Slow down" in line for line in chat.lines) == 1
    assert await chat.selfie_count() == 4  # 1 + 3; the dropped photos were never read
    assert await chat.session_state() == SessionState.COLLECTING

    # 2. A few seconds later the user is served again, with the session as it was.
    now[0] += 2.0
    assert "4 selfies accepted" in await chat.say("/train")
    assert "Slow down" not in await chat.say("/status")
    # 3. A new flood is warned about once more, then dropped again.
    assert "Slow down" in await chat.say("/status")
    assert await chat.say("/status") == ""


async def test_an_album_sent_photo_by_photo_is_not_a_flood(chat: Harness, tmp_path: Path) -> None:
    from bot.local.samples import make_sample_selfies

    assert chat.settings.rate_limit_burst >= 20  # the default lets 20 selfies through, one message each
    chat.app.service.limiter = RateLimiter(chat.settings.rate_limit_burst, chat.settings.rate_limit_per_s)
    for path in make_sample_selfies(tmp_path / "album", count=chat.settings.max_selfies + 1, seed=3):
        assert "Slow down" not in await chat.say(str(path))
    assert await chat.selfie_count() == chat.settings.max_selfies
