"""/favorites zip through the real PTB client against the Bot API stand-in: ZIP documents, each within the port's
upload limit, that together hold exactly the favorites' bytes."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from jobs.contract.keys import output_prefix
from tests.bot.telegram.conftest import ALICE, TelegramBot
from tests.bot.telegram.standin import BotApiStandin
from tests.bot.telegram.steps import with_text

USER_KEY = f"telegram:{ALICE.id}"


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    # Noise, so PNG cannot shrink it: each file is about 30 kB, and three make a ZIP over the limit below.
    Image.effect_noise((100, 100), 64 + shade).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_favorites_zip_comes_as_documents_split_under_the_upload_limit(
    telegram_bot: TelegramBot, standin: BotApiStandin
) -> None:
    # 1. Alice, with three starred headshots (written as delivery leaves them; no worker runs).
    await standin.send_text(ALICE, "/help")
    await standin.wait_for(lambda: with_text(standin, ALICE, "/train"), what="the help")
    store, storage = telegram_bot.app.store, telegram_bot.app.core.storage
    expected: dict[str, bytes] = {}
    for number in (1, 2, 3):
        key = f"{output_prefix(USER_KEY, '1-1')}{number:02d}-seed{number}.png"
        expected[key.rsplit("/", 1)[-1]] = data = _png(number)
        await storage.put(key, data)
        image_id = await store.add_image(USER_KEY, "generate:x", key, number, f"m{number}")
        assert await store.add_favorite(USER_KEY, image_id)

    # 2. A limit that holds two of them per ZIP: two documents, each a whole archive.
    limit = max(len(data) for data in expected.values()) * 2 + 1000
    telegram_bot.frontend.port.upload_limit_bytes = limit
    await standin.send_text(ALICE, "/favorites zip")
    await standin.wait_for(
        lambda: len([sent for sent in standin.messages(ALICE.id) if sent.kind == "document"]) == 2,
        what="two ZIP documents",
    )
    assert with_text(standin, ALICE, "Your 3 favorite headshots in 2 ZIP files:")
    documents = [sent for sent in standin.messages(ALICE.id) if sent.kind == "document"]
    found: dict[str, bytes] = {}
    for sent in documents:
        assert sent.data is not None and len(sent.data) <= limit
        with zipfile.ZipFile(io.BytesIO(sent.data)) as opened:
            found |= {name: opened.read(name) for name in opened.namelist()}
    assert found == expected
