"""The checks every selfie passes before it may train a model, each failure worded so the user knows what to do.

Safe decoding first (``read_selfie``), then the face: exactly one, big enough, sharp enough, not the same shot as
one already accepted, and the same person as the rest once there are enough to tell (``IDENTITY_AFTER``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pipeline.errors import Reason, SelfieRejected
from pipeline.selfies.decoding import Selfie, read_selfie
from pipeline.selfies.faces import Face, FaceAnalyzer
from pipeline.selfies.identity import DEFAULT_MIN_SCORE, cosine, reference_embedding
from pipeline.selfies.phash import hamming, phash

__all__ = ["IDENTITY_AFTER", "AcceptedSelfie", "IntakeRules", "SelfieFacts", "check_face", "inspect_selfie"]

# The identity check needs a majority to compare against: with fewer accepted selfies, who is "the rest"?
IDENTITY_AFTER = 3
# A second face counts when the detector is fairly sure of it and it is not tiny next to the first: a poster or
# a far-away passer-by does not make a group photo. (The astronaut's suit patch scores 0.12 as a "face".)
OTHER_FACE_MIN_SCORE = 0.3
OTHER_FACE_MIN_RELATIVE_SIZE = 0.4


@dataclass(frozen=True)
class IntakeRules:
    """Thresholds of the checks; ``jobs.settings.Settings`` carries the product's values."""

    min_face_px: int = 80  # face box width in the photo's pixels
    min_sharpness: float = 40.0  # variance of the Laplacian on the face resized to 128 px; sharp faces score 90+
    duplicate_max_distance: int = 4  # pHash bits (of 64) that may differ for a photo to count as one already sent
    identity_min_score: float = DEFAULT_MIN_SCORE  # cosine to the accepted selfies' reference embedding


@dataclass(frozen=True)
class SelfieFacts:
    """What later checks and training need from an accepted selfie (kept in the bot's store)."""

    face_box: tuple[int, int, int, int]  # left, top, width, height in the stored photo's pixels
    phash: int
    embedding: NDArray[np.float32]

    def face_center(self, width: int, height: int) -> tuple[float, float]:
        """The face's centre as a fraction of the photo's (width, height): what training crops around."""
        left, top, face_w, face_h = self.face_box
        return (min(max((left + face_w / 2) / width, 0.0), 1.0), min(max((top + face_h / 2) / height, 0.0), 1.0))


@dataclass(frozen=True)
class AcceptedSelfie:
    selfie: Selfie
    facts: SelfieFacts


def inspect_selfie(
    data: bytes,
    analyzer: FaceAnalyzer,
    accepted: Sequence[SelfieFacts] = (),
    rules: IntakeRules = IntakeRules(),
    *,
    min_side: int = 256,
) -> AcceptedSelfie:
    """Decode ``data`` safely and check its face against ``accepted``; raise ``SelfieRejected`` saying why not.

    Blocking (decoding plus ~0.2 s of face analysis): the bot runs it in a thread.
    """
    selfie = read_selfie(data, min_side=min_side)
    with Image.open(io.BytesIO(selfie.jpeg)) as image:
        image.load()
        return AcceptedSelfie(selfie, check_face(image, analyzer, accepted, rules))


def check_face(
    image: Image.Image, analyzer: FaceAnalyzer, accepted: Sequence[SelfieFacts], rules: IntakeRules
) -> SelfieFacts:
    """The face checks alone, on an upright RGB photo; the order is the order a user should fix things in."""
    # 1. Exactly one face.
    faces = analyzer.faces(image)
    if not faces:
        raise SelfieRejected("no face", reason=Reason.NO_FACE)
    face = faces[0]
    others = [other for other in faces[1:] if _counts_as_another_person(other, face)]
    if others:
        raise SelfieRejected(f"{len(others) + 1} faces", reason=Reason.SEVERAL_FACES, count=len(others) + 1)

    # 2. Big and sharp enough to learn from.
    width = face.box[2]
    if width < rules.min_face_px:
        raise SelfieRejected(
            f"face {width} px wide", reason=Reason.FACE_TOO_SMALL, width=width, needed=rules.min_face_px
        )
    if face.sharpness < rules.min_sharpness:
        raise SelfieRejected(
            f"sharpness {face.sharpness:.0f}",
            reason=Reason.BLURRY,
            sharpness=face.sharpness,
            needed=rules.min_sharpness,
        )

    # 3. New, and the same person as the rest.
    hashed = phash(image)
    if any(hamming(hashed, earlier.phash) <= rules.duplicate_max_distance for earlier in accepted):
        raise SelfieRejected("duplicate", reason=Reason.DUPLICATE)
    if len(accepted) >= IDENTITY_AFTER:
        score = cosine(face.embedding, reference_embedding([earlier.embedding for earlier in accepted]))
        if score < rules.identity_min_score:
            raise SelfieRejected(
                f"likeness {score:.2f}", reason=Reason.OTHER_PERSON, score=score, needed=rules.identity_min_score
            )
    return SelfieFacts(face.box, hashed, face.embedding)


def _counts_as_another_person(other: Face, face: Face) -> bool:
    return other.score >= OTHER_FACE_MIN_SCORE and other.box[2] >= OTHER_FACE_MIN_RELATIVE_SIZE * face.box[2]
