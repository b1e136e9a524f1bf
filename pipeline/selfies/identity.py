"""Does a headshot look like its user? A cosine score against the robust mean of their accepted selfies.

The score compares dlib face descriptors (``pipeline.selfies.faces``). dlib calls two faces the same person within a
Euclidean distance of 0.6; its descriptors are about 1.45 long, so that is a cosine of about 0.92.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from pipeline.selfies.faces import Face, FaceAnalyzer

__all__ = [
    "DEFAULT_MIN_SCORE",
    "SAME_PERSON_DISTANCE",
    "HeadshotScore",
    "cosine",
    "pick_best",
    "reference_embedding",
    "score_headshots",
    "scores_of_faces",
]

SAME_PERSON_DISTANCE = 0.6
DEFAULT_MIN_SCORE = 0.92


@dataclass(frozen=True)
class HeadshotScore:
    score: float  # cosine to the reference: ~0.97+ the same person, below ~0.92 someone else; 0 without a face
    face_found: bool


def cosine(first: NDArray[np.float32], second: NDArray[np.float32]) -> float:
    norm = float(np.linalg.norm(first) * np.linalg.norm(second))
    return float(np.dot(first, second)) / norm if norm else 0.0


def reference_embedding(embeddings: Sequence[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The mean of the embeddings close to their median, so one odd selfie (or another person) cannot pull it."""
    if not embeddings:
        raise ValueError("reference_embedding needs at least one embedding, but got none.")
    stacked = np.stack([np.asarray(embedding, dtype=np.float32) for embedding in embeddings])
    if len(stacked) < 3:
        return stacked.mean(axis=0)  # two points have no majority to trust over the other
    distances = np.linalg.norm(stacked - np.median(stacked, axis=0), axis=1)
    keep = distances <= SAME_PERSON_DISTANCE
    if keep.sum() < (len(stacked) + 1) // 2:
        # No clear majority within dlib's same-person radius: trust the closer half instead.
        keep = distances <= np.sort(distances)[(len(stacked) - 1) // 2]
    return stacked[keep].mean(axis=0)


def score_headshots(
    analyzer: FaceAnalyzer, images: Sequence[Image.Image], reference: NDArray[np.float32], *, large_first: bool = False
) -> list[HeadshotScore]:
    """Each image's best cosine to ``reference`` over the faces in it; 0 where no face is found. ``large_first``:
    the faces searched as a worker searches its renders (``FaceAnalyzer.faces``), so the scores are its ranking's."""
    return scores_of_faces([analyzer.faces(image, large_first=large_first) for image in images], reference)


def scores_of_faces(found: Sequence[Sequence[Face]], reference: NDArray[np.float32]) -> list[HeadshotScore]:
    """``score_headshots`` from the faces already found in each image (``FaceAnalyzer.faces``)."""
    scores = []
    for faces in found:
        best = max((cosine(face.embedding, reference) for face in faces), default=0.0)
        scores.append(HeadshotScore(round(best, 4), bool(faces)))
    return scores


def pick_best(scores: Sequence[HeadshotScore], count: int, min_score: float) -> list[int]:
    """Indices of up to ``count`` images, best first, dropping those without a face or below ``min_score``.

    When none pass (a model that never draws a face, as the tiny test model), the first ``count`` by score come
    back anyway: the user asked for images, and the scores travel with them.
    """
    order = sorted(range(len(scores)), key=lambda index: -scores[index].score)  # stable: ties keep seed order
    passing = [index for index in order if scores[index].face_found and scores[index].score >= min_score]
    return (passing or order)[:count]
