"""Faces in a photo: where they are, how sharp, and who (a 128-number dlib ResNet descriptor).

Every model ships inside a wheel, so this runs offline and without torch (the bot calls it on each selfie):
dlib's HOG frontal-face detector, its 5-point landmark model and its ResNet face descriptor (99.38% on LFW), the
last two from the ``face-recognition-models`` package. One ``FaceAnalyzer`` per process loads them on first use.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["CLEAR_FACE_SCORE", "DETECT_SIDE", "Face", "FaceAnalyzer", "face_models_dir"]

# Photos are searched at most this large (longer side), upsampled once: HOG's 80 px window then finds faces from
# 40 px, i.e. from 5% of the longer side. Larger inputs only cost time (0.3 s at 800 px on one core). Renders are
# searched at this size first (``large_first``).
DETECT_SIDE = 800
# A search for large faces first stops only at a face this confident (a clear frontal face scores ~1): a doubtful
# detection at the copy's own size, maybe no face at all, must not hide a real face the upsampled search would find.
CLEAR_FACE_SCORE = 0.5
# Sharpness is measured on the face resized to this square, so a big face and a small one compare fairly.
SHARPNESS_SIDE = 128
_LANDMARKS = "shape_predictor_5_face_landmarks.dat"
_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"


@dataclass(frozen=True)
class Face:
    """One detected face. ``box`` is (left, top, width, height) in the analysed image's pixels."""

    box: tuple[int, int, int, int]
    score: float  # the HOG detector's confidence: ~1 for a clear frontal face, near 0 for doubtful ones
    sharpness: float  # variance of the Laplacian of the face, resized to SHARPNESS_SIDE: blur lowers it
    embedding: NDArray[np.float32]  # 128 numbers; the same person's faces lie within ~0.6 of each other

    @property
    def center(self) -> tuple[float, float]:
        left, top, width, height = self.box
        return left + width / 2, top + height / 2


def face_models_dir() -> Path:
    """The folder of dlib model files inside the installed ``face-recognition-models`` package."""
    # ``import face_recognition_models`` needs pkg_resources (gone from recent setuptools); find it without importing.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face models missing: pip install face-recognition-models (it ships dlib's model files)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class FaceAnalyzer:
    """Finds and describes faces; models load once, on first use, and calls are serialised (dlib shares state)."""

    def __init__(self, models_dir: Path | None = None) -> None:
        self._models_dir = models_dir
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, Any] | None = None

    def load(self) -> FaceAnalyzer:
        """Load the models now (0.4 s) rather than on the first photo; returns self."""
        with self._lock:
            self._load()
        return self

    def _load(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            import dlib

            folder = self._models_dir or face_models_dir()
            self._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(folder / _LANDMARKS)),
                dlib.face_recognition_model_v1(str(folder / _DESCRIPTOR)),
            )
        return self._models

    def faces(self, image: Image.Image, *, min_score: float = 0.0, large_first: bool = False) -> list[Face]:
        """Every face scoring at least ``min_score``, most confident first, in ``image``'s own pixels.

        ``large_first``: search the copy at its own size first, where HOG's window finds faces from 10% of its longer
        side, and upsampled (from 5%) only where that finds no clear face (``CLEAR_FACE_SCORE``). A render's face is
        large, and the upsampled search takes five times as long (0.22 s against 0.04 s for a headshot-sized render
        on one core of the dev box); what it gives up is the small faces beside a clear large one (a selfie's check
        counts those: it searches all)."""
        # 1. Search a copy no larger than DETECT_SIDE.
        rgb = image.convert("RGB")
        scale = min(1.0, DETECT_SIDE / max(rgb.size))
        small = (
            rgb
            if scale == 1.0
            else rgb.resize(
                (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR
            )
        )
        pixels = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
        grey = np.asarray(rgb.convert("L"))
        with self._lock:
            detector, landmarks, descriptor = self._load()
            for upsample in (0, 1) if large_first else (1,):
                rects, scores, _ = detector.run(pixels, upsample, min_score)
                if max(scores, default=0.0) >= CLEAR_FACE_SCORE:
                    break
            found = []
            # 2. Describe each face on the searched copy (the descriptor aligns a 150 px chip itself); measure
            # sharpness on the full-resolution face, where blur is visible.
            for rect, score in sorted(zip(rects, scores, strict=True), key=lambda pair: -pair[1]):
                shape = landmarks(pixels, rect)
                embedding = np.asarray(descriptor.compute_face_descriptor(pixels, shape), dtype=np.float32)
                box = _clip(
                    (
                        round(rect.left() / scale),
                        round(rect.top() / scale),
                        round(rect.width() / scale),
                        round(rect.height() / scale),
                    ),
                    rgb.size,
                )
                found.append(Face(box, float(score), _sharpness(grey, box), embedding))
        return found


def _clip(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of ``box`` inside an image of ``size`` (HOG boxes may overhang a face at the edge)."""
    left, top, width, height = box
    right, bottom = min(left + width, size[0]), min(top + height, size[1])
    left, top = max(left, 0), max(top, 0)
    return left, top, max(right - left, 1), max(bottom - top, 1)


def _sharpness(grey: NDArray[np.uint8], box: tuple[int, int, int, int]) -> float:
    left, top, width, height = box
    crop = grey[top : top + height, left : left + width]
    interpolation = cv2.INTER_AREA if min(crop.shape) >= SHARPNESS_SIDE else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=interpolation)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())
