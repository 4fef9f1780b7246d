"""Repeats by (device, seq) and sequence gaps as a completeness figure."""

from __future__ import annotations

from collector.dedup import MAX_TRACKED_GAP, SeqTracker


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


def test_rollback_forgets_an_unstored_batch_and_commit_keeps_it() -> None:
    t = SeqTracker()
    t.fresh("a", [1, 2])
    assert t.commit() == ["a"]
    t.fresh("a", [3, 4])
    t.fresh("b", [1])
    t.rollback()
    assert t.fresh("a", [3, 4]) == [0, 1] and t.fresh("b", [1]) == [0]


def test_a_huge_jump_resets_rather_than_tracking_every_seq() -> None:
    t = SeqTracker()
    t.fresh("a", [1])
    t.fresh("a", [MAX_TRACKED_GAP + 10])
    assert t.gaps("a") == 0
    assert t.fresh("a", [5]) == [0]  # below the new floor: unknown, written again
