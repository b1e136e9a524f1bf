"""How many images a request renders, and in which batches (what a compiled worker must warm up for)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.worker.ranking import candidate_count, render_batch_sizes


@pytest.mark.parametrize(
    ("count", "factor", "with_reference", "expected"),
    [(4, 1.5, True, 6), (4, 1.5, False, 4), (4, 1.0, True, 4), (3, 1.5, True, 5)],
)
def test_candidates_are_rendered_only_when_there_is_a_face_to_rank_against(
    count: int, factor: float, with_reference: bool, expected: int
) -> None:
    reference = np.ones(128, dtype=np.float32) if with_reference else None
    assert candidate_count(count, factor, reference) == expected


@pytest.mark.parametrize(
    ("count", "factor", "batch", "expected"),
    [(4, 1.5, 4, {4, 2}), (4, 1.0, 4, {4}), (5, 1.5, 4, {4, 1}), (2, 1.5, 4, {2, 3}), (8, 1.5, 4, {4})],
)
def test_render_batch_sizes_cover_the_plain_and_the_ranked_request(
    count: int, factor: float, batch: int, expected: set[int]
) -> None:
    assert render_batch_sizes(count, factor, batch) == expected
