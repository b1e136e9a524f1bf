"""Which renders a user gets: extra candidates are rendered, scored for likeness, and the best posted.

The reference face embedding is the one the bot stored beside the LoRA (``identity_key``) when training began;
without it (a LoRA trained before identity scoring), the request's own count is rendered and posted unranked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jobs.contract.keys import identity_key
from jobs.storage import BlobStorage

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from pipeline.selfies.faces import Face

__all__ = ["candidate_count", "load_reference", "rank_headshots"]


async def load_reference(storage: BlobStorage, lora_key: str) -> NDArray[np.float32] | None:
    key = identity_key(lora_key)
    if not await storage.exists(key):
        return None
    return np.asarray(json.loads(await storage.get(key))["embedding"], dtype=np.float32)


def candidate_count(count: int, factor: float, reference: NDArray[np.float32] | None) -> int:
    """How many to render for ``count`` posted: ``factor`` times as many, when there is a face to rank against."""
    return count if reference is None else _ranked_count(count, factor)


def _ranked_count(count: int, factor: float) -> int:
    return max(count, math.ceil(count * factor))


def render_batch_sizes(count: int, factor: float, batch_size: int) -> set[int]:
    """Every batch size that rendering ``count`` headshots in batches of ``batch_size`` uses, ranked or not."""
    sizes = set()
    for renders in (count, _ranked_count(count, factor)):
        sizes.add(min(batch_size, renders))
        if renders % batch_size:
            sizes.add(renders % batch_size)  # the last, smaller batch
    return sizes


def rank_headshots(
    generated: Sequence[Any],
    found: Sequence[Sequence[Face]],
    reference: NDArray[np.float32] | None,
    count: int,
    min_score: float,
) -> list[tuple[Any, float | None]]:
    """Up to ``count`` of ``generated`` (``GeneratedImage``s), best likeness first, each with its score, from the
    faces ``found`` in each (``jobs.worker.face_search``).

    Faceless and off-identity renders are dropped (``pipeline.identity.pick_best``).
    """
    from pipeline.selfies.identity import pick_best, scores_of_faces

    if reference is None:
        return [(image, None) for image in generated[:count]]
    scores = scores_of_faces(found, reference)
    return [(generated[index], scores[index].score) for index in pick_best(scores, count, min_score)]
