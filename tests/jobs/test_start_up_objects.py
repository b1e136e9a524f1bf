"""A worker keeps its start's objects out of garbage collections (``freeze_start_up_objects``): they are no longer
walked, and garbage made after the start is still freed."""

from __future__ import annotations

import gc
import weakref

from jobs.worker.state import freeze_start_up_objects


class _Node:
    partner: _Node


def test_the_start_objects_leave_collections_and_later_cyclic_garbage_is_still_freed() -> None:
    kept = _Node()
    kept.partner = kept  # a cycle alive at the start, as a pipeline's modules and graphs are
    try:
        frozen, seconds = freeze_start_up_objects()
        assert frozen == gc.get_freeze_count() > 0 and seconds >= 0
        assert not any(obj is kept for obj in gc.get_objects())  # out of every generation the collector walks

        later = _Node()
        later.partner = later  # a job's cyclic garbage: freed by the next collection, as before
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of this test process collects as before
