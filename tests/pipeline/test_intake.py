"""Selfie checks on real photos: one clear face of the same person is accepted; everything else is told why not."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import pillow_heif
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from pipeline.errors import SelfieRejected
from pipeline.selfies.faces import FaceAnalyzer
from pipeline.selfies.intake import AcceptedSelfie, IntakeRules, SelfieFacts, inspect_selfie
from tests.said import refused


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def accepted(faces: FaceAnalyzer, selfie_images: list[Image.Image]) -> list[AcceptedSelfie]:
    """Three selfies of one person, checked one after another as a user would send them."""
    kept: list[AcceptedSelfie] = []
    for image in selfie_images[:3]:
        kept.append(inspect_selfie(jpeg(image), faces, [item.facts for item in kept]))
    return kept


def facts_of(accepted: list[AcceptedSelfie]) -> list[SelfieFacts]:
    return [item.facts for item in accepted]


def test_one_clear_face_is_accepted_with_its_box(accepted: list[AcceptedSelfie]) -> None:
    first = accepted[0]
    left, top, width, height = first.facts.face_box
    # The selfie is the astronaut photo cropped at (60, 0): her face sits at about (175, 76), 91 px wide.
    assert abs(left - 115) < 12 and abs(top - 76) < 12 and 80 <= width <= 110
    assert first.facts.embedding.shape == (128,)
    center_x, center_y = first.facts.face_center(first.selfie.width, first.selfie.height)
    assert 0.4 < center_x < 0.6 and 0.3 < center_y < 0.5  # training crops keep the face, not the suit


def test_whole_astronaut_photo_counts_one_face(faces: FaceAnalyzer, astronaut_jpeg: bytes) -> None:
    # The detector also scores a patch on her suit as a weak "face" (0.12); that must not refuse the photo.
    assert inspect_selfie(astronaut_jpeg, faces).facts.face_box[2] >= 80


def test_photo_without_a_face_is_refused(faces: FaceAnalyzer) -> None:
    from skimage import data

    with refused(SelfieRejected, match="No face found: send a photo where your face is clearly visible"):
        inspect_selfie(jpeg(Image.fromarray(data.coffee())), faces)


def test_two_people_are_refused(
    faces: FaceAnalyzer, selfie_images: list[Image.Image], other_person: Image.Image
) -> None:
    pair = Image.new("RGB", (600, 300))
    pair.paste(selfie_images[0].resize((300, 300)), (0, 0))
    pair.paste(other_person, (300, 0))
    with refused(SelfieRejected, match="Two faces found: send a photo of just you"):
        inspect_selfie(jpeg(pair), faces)


def test_small_face_is_refused_with_its_size(faces: FaceAnalyzer, astronaut: Image.Image) -> None:
    far_away = astronaut.resize((260, 260))  # her face shrinks to ~53 px
    with refused(SelfieRejected, match=r"Face too small \(5\d px wide; I need at least 80\): move closer"):
        inspect_selfie(jpeg(far_away), faces)


def test_blurred_selfie_is_refused(faces: FaceAnalyzer, selfie_images: list[Image.Image]) -> None:
    shaky = selfie_images[3].filter(ImageFilter.GaussianBlur(2.5))
    with refused(SelfieRejected, match=r"Blurry \(sharpness \d+; I need at least 40\): hold the phone still"):
        inspect_selfie(jpeg(shaky), faces)


def test_same_shot_sent_again_is_refused(
    faces: FaceAnalyzer, selfie_images: list[Image.Image], accepted: list[AcceptedSelfie]
) -> None:
    # The second selfie again, as a messenger would resend it: smaller and recompressed.
    resent = jpeg(selfie_images[1].resize((280, 280)), optimize=True)
    with refused(SelfieRejected, match="Same photo as one you already sent"):
        inspect_selfie(resent, faces, facts_of(accepted))


def test_different_person_is_flagged_once_three_are_in(
    faces: FaceAnalyzer, other_person: Image.Image, accepted: list[AcceptedSelfie]
) -> None:
    # The other person is a 25 px LFW face enlarged, so blurry: this test lets blur pass to reach the identity check.
    lenient = IntakeRules(min_sharpness=0)
    with refused(SelfieRejected, match=r"Looks like a different person .*likeness 0\.\d\d, I need 0\.92"):
        inspect_selfie(jpeg(other_person), faces, facts_of(accepted), lenient)
    # With fewer than three accepted there is no "rest" to compare with: the first selfies are taken as they come.
    assert inspect_selfie(jpeg(other_person), faces, facts_of(accepted)[:2], lenient).facts.face_box[2] > 150


def test_new_shot_of_the_same_person_is_accepted(
    faces: FaceAnalyzer, astronaut: Image.Image, accepted: list[AcceptedSelfie]
) -> None:
    darker_mirrored = ImageOps.mirror(ImageEnhance.Contrast(astronaut.crop((100, 20, 400, 320))).enhance(1.3))
    assert inspect_selfie(jpeg(darker_mirrored), faces, facts_of(accepted)).selfie.width == 300


@pytest.mark.parametrize("kind", ["HEIF", "WEBP"])
def test_heic_and_webp_are_accepted(faces: FaceAnalyzer, selfie_images: list[Image.Image], kind: str) -> None:
    buffer = io.BytesIO()
    if kind == "HEIF":
        pillow_heif.from_pillow(selfie_images[2]).save(buffer, quality=90)
    else:
        selfie_images[2].save(buffer, format="WEBP", quality=90)
    checked = inspect_selfie(buffer.getvalue(), faces)
    assert Image.open(io.BytesIO(checked.selfie.jpeg)).format == "JPEG"


def _black_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: a small file that claims a huge image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(1)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then 8 black pixels a byte
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


BAD_FILES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "zero bytes": (lambda photo: b"", "empty"),
    "pdf named .jpg": (
        lambda photo: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        "not a photo I can read",
    ),
    "truncated": (lambda photo: photo[: len(photo) // 3], "cut off"),
    # 144 MP: Pillow only warns; our own 40 MP limit refuses it before decoding.
    "12000x12000 png": (lambda photo: _black_png(12_000, 12_000), r"too large to process \(12000x12000\)"),
    # 400 MP: over twice Pillow's limit, so Pillow itself refuses to open it.
    "decompression bomb": (lambda photo: _black_png(20_000, 20_000), "too large to process"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_broken_and_hostile_files_are_refused_with_a_reason(
    faces: FaceAnalyzer, astronaut_jpeg: bytes, name: str
) -> None:
    make, reason = BAD_FILES[name]
    with refused(SelfieRejected, match=reason):
        inspect_selfie(make(astronaut_jpeg), faces)
