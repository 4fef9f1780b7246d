"""The fleet's long-lived state leaves the cycle collector's reach once a minute, so a full
collection no longer walks it on the ingest thread; young cyclic garbage is still
collected, not frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from collector.long_lived_heap import LongLivedHeap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def clean_heap() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()  # other tests must see the collector as they left it
    gc.collect()


def test_state_is_frozen_when_due_and_young_cycles_are_collected_first(
        clean_heap: None) -> None:
    clock = [0.0]
    heap = LongLivedHeap(every_s=60.0, clock=lambda: clock[0])
    fleet_state = [{"seqs": [1, 2, 3], "device": Node()} for _ in range(1000)]
    cycle_a, cycle_b = Node(), Node()
    cycle_a.other, cycle_b.other = cycle_b, cycle_a
    dead = weakref.ref(cycle_a)
    del cycle_a, cycle_b  # garbage only the cycle collector can free

    clock[0] = 59.9
    assert not heap.freeze_if_due()
    assert id(fleet_state[500]) in {id(o) for o in gc.get_objects()}  # walked by a full one
    clock[0] = 60.0
    frozen_before = heap.frozen()
    assert heap.freeze_if_due()
    assert dead() is None  # collected before the freeze, not kept for ever
    assert heap.frozen() >= frozen_before + 1000  # the fleet's dicts and nodes
    tracked = {id(o) for o in gc.get_objects()}
    assert id(fleet_state[500]) not in tracked  # a full collection no longer visits it
    assert not heap.freeze_if_due()  # next one a minute later
    clock[0] = 120.0
    assert heap.freeze_if_due() and heap.freezes == 2


def test_start_up_builds_without_collections_freezes_what_it_built_and_restores_the_collector(
        clean_heap: None) -> None:
    from collector.long_lived_heap import building

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with building():
        assert not gc.isenabled()
        with building():  # a second collector starting in the same process
            assert not gc.isenabled()
        assert not gc.isenabled()  # still off: the first one is building
        registry = [{"id": f"d{i}", "contacts": [i]} for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + 2000  # the dicts and their lists
    assert gc.is_tracked(registry[0])


def test_a_start_up_leaves_a_switched_off_collector_off(clean_heap: None) -> None:
    from collector.long_lived_heap import building

    gc.disable()
    try:
        with building():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
