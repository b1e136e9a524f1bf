"""A worker and Python's garbage collector: the start's objects are kept out of collections
(``freeze_start_up_objects``) while later garbage is still freed, and a job's log line says how long collections
stopped it (``CollectionClock``, ``Laps``)."""

from __future__ import annotations

import gc
import weakref

from jobs.worker.laps import CollectionClock, Laps
from jobs.worker.state import freeze_start_up_objects


class _Node:
    partner: _Node


def test_the_start_objects_leave_collections_and_later_cyclic_garbage_is_still_freed() -> None:
    kept = _Node()
    kept.partner = kept  # a cycle alive at the start, as a pipeline's modules and graphs are
    try:
        frozen, seconds = freeze_start_up_objects()
        # A frozen object still goes when its last reference does (the log call's temporaries did once, in CI), so the
        # count can only fall after the freeze.
        assert 0 < gc.get_freeze_count() <= frozen and seconds >= 0
        assert not any(obj is kept for obj in gc.get_objects())  # out of every generation the collector walks

        later = _Node()
        later.partner = later  # a job's cyclic garbage: freed by the next collection, as before
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of this test process collects as before


def test_a_jobs_laps_count_the_collections_while_it_ran_and_only_those() -> None:
    clock = CollectionClock().start()
    try:
        gc.collect()  # before the job: not its time
        laps = Laps(clock)
        gc.collect()  # a full collection while the job runs
        laps.lap("GPU")
        assert clock.oldest >= 2 and 0 < laps.collecting <= clock.seconds
        assert str(laps) == f"GPU {laps.seconds['GPU']:.2f} s; garbage collections {laps.collecting:.2f} s"
    finally:
        clock.stop()
    stopped = clock.seconds
    gc.collect()
    assert clock.seconds == stopped  # stopped: no longer counting
    plain = Laps()
    plain.lap("fetch")
    assert str(plain) == f"fetch {plain.seconds['fetch']:.2f} s" and plain.collecting == 0.0
