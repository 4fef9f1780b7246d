"""Keeping Python's cycle collector from walking the fleet's state on the ingest thread.

CPython's full (generation 2) collection visits every container object it tracks. At
100,000 devices the collector's per-device state (seq ranges, hourly sums, health, cached
tags) is a few million such objects, and a full collection took ~0.5 s, on whichever
thread happened to allocate: in practice the ingest thread, seen from outside as a
periodic ingest pause of about 570 ms. The state is long-lived by design and freed by
reference counting when a device is forgotten, so it does not need the cycle collector.

So, every `every_s`: a young collection (cycles among new objects die now, before they
can be frozen) and `gc.freeze()`, which moves every tracked object to the permanent
generation. Later full collections then visit only what was allocated since. The price:
a reference cycle that becomes garbage after its objects were frozen is never collected
(acyclic garbage still is). `airgrid_collector_gc_frozen_objects` shows the frozen
count, so a steady climb with a flat fleet would be visible.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FREEZE_EVERY_S = 60.0


_building_lock = threading.Lock()
_building = 0  # start-ups building now (several collectors may start in one process)
_was_enabled = False  # the collector's state before the first of them


@contextmanager
def building() -> Iterator[None]:
    """No cycle collection while start-up builds what lives as long as the process (the
    registry, the engine): collections would only walk objects that all survive. At
    100,000 devices the registry parse took 1.7 s with them and 1.3 s without. What was
    built is frozen after, as `LongLivedHeap` does (else the first young collection
    walks all of it), and the collector is switched back on as it was once the last
    start-up building at the same time is done."""
    global _building, _was_enabled
    with _building_lock:
        if _building == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _building += 1
    try:
        yield
    finally:
        with _building_lock:
            _building -= 1
            gc.freeze()
            if _building == 0 and _was_enabled:
                gc.enable()


class LongLivedHeap:
    def __init__(self, every_s: float = FREEZE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._next = clock() + every_s
        self.freezes = 0

    def freeze_if_due(self) -> bool:
        """Freeze what survived since the last time, if `every_s` has passed."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.every_s
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        return True

    @staticmethod
    def frozen() -> int:
        return gc.get_freeze_count()
