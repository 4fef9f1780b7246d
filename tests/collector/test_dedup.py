"""Repeats by (device, seq) are dropped; gaps are tracked and filled, and give the
completeness figure; never a false repeat."""

from __future__ import annotations

from collector.dedup import MAX_TRACKED_GAP, SeqTracker


def test_repeats_and_gaps() -> None:
    t = SeqTracker()
    for s in (1, 2, 3):
        assert not t.seen("a", s)
        t.mark("a", s)
    assert t.seen("a", 2)
    t.mark("a", 7)  # 4, 5, 6 missing
    assert t.gaps("a") == 3
    assert not t.seen("a", 5)
    t.mark("a", 5)
    assert t.seen("a", 5) and t.gaps("a") == 2
    assert not t.seen("b", 1)


def test_first_seq_seen_is_not_a_floor_for_older_ones() -> None:
    t = SeqTracker()
    t.mark("a", 100)  # collector restarted mid-stream: older seqs may still arrive
    assert not t.seen("a", 50)


def test_huge_gap_never_turns_a_fill_into_a_repeat() -> None:
    t = SeqTracker()
    t.mark("a", 1)
    t.mark("a", 1 + MAX_TRACKED_GAP + 10)
    assert not t.seen("a", 500)  # unknown: written again (idempotent), never dropped


def test_repeats_dropped_gaps_tracked_and_filled() -> None:
    t = SeqTracker()
    assert t.fresh("a", [1, 2, 3]) == [0, 1, 2]
    assert t.fresh("a", [3, 4]) == [1] and t.duplicates == 1
    assert t.fresh("a", [8, 9]) == [0, 1]  # 5, 6, 7 missing
    assert t.gaps("a") == 3
    assert t.completeness() == 6 / 9
    assert t.fresh("a", [6, 5, 6]) == [0, 1] and t.duplicates == 2  # late arrivals fill
    assert t.gaps("a") == 1 and t.completeness() == 8 / 9
    assert t.fresh("a", [10, 12]) == [0, 1] and t.gaps("a") == 2  # a hole inside a message


def test_a_huge_jump_resets_rather_than_tracking_every_seq() -> None:
    t = SeqTracker()
    t.fresh("a", [1])
    t.fresh("a", [MAX_TRACKED_GAP + 10])
    assert t.gaps("a") == 0
    assert t.fresh("a", [5]) == [0]  # below the new floor: unknown, written again


def test_a_new_devices_first_message_in_order_is_tracked_as_reading_by_reading() -> None:
    whole, one_by_one = SeqTracker(clock=lambda: 1.0), SeqTracker(clock=lambda: 1.0)
    seqs = [5, 6, 7, 9, 12, 13]  # in order, with holes: gaps open below them
    assert whole.fresh("d", seqs) == list(range(len(seqs)))
    for s in seqs:
        assert one_by_one.fresh("d", [s]) == [0]
    assert whole.devices == one_by_one.devices
    assert (whole.gaps("d"), whole.fresh("d", [4, 8, 9])) == (3, [0, 1])  # 4 is unknown
