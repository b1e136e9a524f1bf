"""The image safety check: every rendered headshot passes NudeNet's detector before it is stored or posted.

NudeNet (``nudenet`` on PyPI) ships its small ONNX detector ("320n", 12 MB) inside the wheel and runs it on the CPU
through onnxruntime in well under 0.1 s an image, so a worker loads it once at start, with no download and no GPU
memory taken from the diffusion model. Which of its labels count as unsafe, and from which score, is configuration
(``ImageSafety(labels=..., min_score=...)``); the defaults are ``UNSAFE_LABELS`` and ``MIN_SCORE``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipeline.errors import ModelLoadError

__all__ = ["MIN_SCORE", "NUDENET_LABELS", "UNSAFE_LABELS", "Detector", "Finding", "ImageSafety"]

# Every label NudeNet's detector reports (nudenet/nudenet.py), so a configured label set can be checked up front.
NUDENET_LABELS = frozenset(
    {
        "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
        "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED",
        "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
    }
)  # fmt: skip
# Exposed genitals, breasts, buttocks and anus. A bare male chest is not among them: a shirtless portrait is not
# explicit, and the text screen already refuses "topless" and "naked".
UNSAFE_LABELS = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
# A detection at or above this score counts. NudeNet reports anything from 0.2, and such weak detections turn up in
# plain photos (scikit-image's coffee cup, fed in RGB, has "exposed buttocks" at 0.30); parts it sees clearly score
# well above 0.5, so this leaves a margin below them.
MIN_SCORE = 0.45


class Detector(Protocol):
    """What ``ImageSafety`` asks of a detector: NudeNet's ``NudeDetector.detect`` on a BGR array."""

    def detect(self, image: Any) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Finding:
    """One detection that counts: NudeNet's label and its score."""

    label: str
    score: float


class ImageSafety:
    """Says which images must not be posted. Thread-safe (an onnxruntime session runs concurrent calls)."""

    def __init__(
        self, detector: Detector, *, labels: Iterable[str] = UNSAFE_LABELS, min_score: float = MIN_SCORE
    ) -> None:
        self.labels = _checked(labels, min_score)
        self.detector = detector
        self.min_score = min_score

    @classmethod
    def load(cls, *, labels: Iterable[str] = UNSAFE_LABELS, min_score: float = MIN_SCORE) -> ImageSafety:
        """NudeNet's detector from its wheel; ``ModelLoadError`` naming the package and the switch when it fails."""
        _checked(labels, min_score)  # before the detector loads
        try:
            from nudenet import NudeDetector

            detector = NudeDetector()
        except Exception as error:  # an ImportError, or onnxruntime refusing the file
            raise ModelLoadError(
                f"the image safety check could not load NudeNet's detector ({type(error).__name__}: {error}). "
                "Install the worker's packages (pip install 'headshot-bot[worker]': nudenet, onnxruntime), "
                "or set HEADSHOT_IMAGE_SAFETY=off to post rendered images unchecked."
            ) from error
        return cls(detector, labels=labels, min_score=min_score)

    def findings(self, image: Image.Image) -> list[Finding]:
        """What in ``image`` counts as unsafe (empty: it may be posted). Blocking, ~0.1 s on a CPU."""
        # BGR, as NudeNet reads files with OpenCV: in RGB its channel swap feeds the model the wrong order.
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        return [
            Finding(str(found["class"]), float(found["score"]))
            for found in self.detector.detect(bgr)
            if found["class"] in self.labels and float(found["score"]) >= self.min_score
        ]


def _checked(labels: Iterable[str], min_score: float) -> frozenset[str]:
    """``labels`` as a set, when NudeNet has each of them and ``min_score`` is a score; else ValueError naming them."""
    chosen = frozenset(labels)
    unknown = sorted(chosen - NUDENET_LABELS)
    if unknown:
        raise ValueError(f"NudeNet has no label {', '.join(unknown)}; pick from: {', '.join(sorted(NUDENET_LABELS))}")
    if not 0 < min_score <= 1:
        raise ValueError(f"min_score must be in (0, 1], but is {min_score}")
    return chosen
