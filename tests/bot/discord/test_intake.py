"""Selfies into Discord DMs: attachments outside the command, and refusals a user can act on."""

from __future__ import annotations

from pathlib import Path

from tests.bot.discord.conftest import ALICE, DiscordBot
from tests.bot.discord.standin import DiscordStandin


async def test_photos_dropped_into_the_dm_without_a_command_start_a_session(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    photos = [path.read_bytes() for path in sorted(selfie_dir.iterdir())]
    await standin.send_dm(ALICE, "", [(f"IMG_{n}.jpg", data, "image/jpeg") for n, data in enumerate(photos[:3])])
    status = await standin.wait_for(lambda: standin.with_text(ALICE, "selfies accepted ("), what="the status")
    assert status.content.count(": accepted") == 3 and "Start training" in status.buttons
    assert await discord_bot.app.store.current_session(f"discord:{ALICE.id}") is not None


async def test_oversized_non_image_and_corrupt_attachments_are_each_answered_clearly(
    discord_bot: DiscordBot, standin: DiscordStandin, selfie_dir: Path
) -> None:
    good = sorted(selfie_dir.iterdir())[0].read_bytes()
    await standin.command(ALICE, "train")
    await standin.wait_for(lambda: "Send 3 to 5 selfies" in standin.texts(ALICE), what="the /train intro")

    # 1. Too big and not an image: refused from the attachment's metadata, before a byte is downloaded.
    await standin.send_dm(ALICE, "", [("huge.jpg", good, "image/jpeg")], sizes={"huge.jpg": 30 * 2**20})
    await standin.wait_for(lambda: "✗ huge.jpg" in standin.texts(ALICE), what="the 30 MB refusal")
    assert "30.0 MB" in standin.texts(ALICE) and "up to 25.0 MB" in standin.texts(ALICE)
    await standin.send_dm(ALICE, "", [("resume.pdf", b"%PDF-1.4 a CV\n", "application/pdf")])
    await standin.wait_for(lambda: "✗ resume.pdf" in standin.texts(ALICE), what="the PDF refusal")
    assert "application/pdf file, not a photo" in standin.texts(ALICE)
    assert standin.downloads == []

    # 2. A JPEG cut in half is downloaded and judged by the core, which says what is wrong with it.
    await standin.send_dm(ALICE, "", [("cut.jpg", good[: len(good) // 2], "image/jpeg")])
    await standin.wait_for(lambda: "✗ cut.jpg" in standin.texts(ALICE), what="the truncated JPEG verdict")
    assert "cut off" in standin.texts(ALICE)

    # 3. In /train's own options, one bad file does not lose the good one beside it.
    await standin.command(ALICE, "train", files=[("ok.jpg", good, "image/jpeg"), ("notes.txt", b"hi", "text/plain")])
    await standin.wait_for(lambda: "✓ ok.jpg: accepted" in standin.texts(ALICE), what="the good one accepted")
    assert "✗ notes.txt" in standin.texts(ALICE)
    assert len(await discord_bot.app.store.selfie_keys(f"discord:{ALICE.id}", 1)) == 1
