"""Running window totals (`Ring.window_totals`) kept as readings land, buckets leave
and rows are cleared equal adding up the window's buckets, whatever the order."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from alert_rules.state import Ring

DEVICES = 5
SPANS = (0, 3, 6)

# (kind, a, b, c): a reading (device, bucket offset from the head, 0/1 value), a clock
# move of some buckets (jumps past the ring too), or a device's columns emptied
op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, DEVICES - 1), st.integers(-12, 3),
              st.sampled_from([0.0, 1.0, float("nan")])),
    st.tuples(st.just("advance"), st.integers(0, 12), st.just(0), st.just(0.0)),
    st.tuples(st.just("clear"), st.integers(0, DEVICES - 1), st.just(0), st.just(0.0)),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, min_size=1, max_size=60))
def test_running_totals_equal_adding_the_buckets(ops: list[tuple[str, int, int, float]]
                                                 ) -> None:
    ring = Ring(60_000, 8, whole_sums=True)
    ring.allocate(DEVICES)
    ring.advance(100)
    for kind, a, b, c in ops:
        if kind == "add":
            ring.add(np.array([a]), np.array([ring.head + b]), np.array([c]))
        elif kind == "advance":
            ring.advance(ring.head + a)
        else:
            ring.clear_rows(np.array([a]))
        for span in SPANS:
            first, last = ring.head - span, ring.head
            kept = ring.window_totals(first, last, DEVICES)
            assert kept is not None and kept[1] is not None
            cnt = ring.reduce(ring.cnt, first, last, DEVICES)
            total = ring.reduce(ring.sum, first, last, DEVICES)
            assert cnt is not None and total is not None
            assert kept[0].tolist() == cnt.tolist(), (kind, span)
            assert kept[1].tolist() == total.tolist(), (kind, span)


def test_a_window_not_ending_at_the_head_is_added_up() -> None:
    """A reading ahead of the tick moved the head: the tick's window is not the running
    one, so the caller adds the buckets up."""
    ring = Ring(60_000, 8, whole_sums=True)
    ring.allocate(2)
    ring.advance(100)
    assert ring.window_totals(97, 100, 2) is not None
    ring.add(np.array([0]), np.array([102]), np.array([1.0]))
    assert ring.window_totals(97, 100, 2) is None
    kept = ring.window_totals(99, 102, 2)
    assert kept is not None and kept[0].tolist() == [1, 0]
