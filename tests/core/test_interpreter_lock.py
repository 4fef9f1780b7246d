"""Long loops that give the interpreter lock away every few items."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid import interpreter_lock


@given(items=st.lists(st.integers()), every=st.integers(1, 50))
def test_sharing_yields_every_item_in_order_and_gives_the_lock_away_every_n(
        items: list[int], every: int) -> None:
    slept: list[float] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(interpreter_lock.time, "sleep", slept.append)
        mp.setattr(interpreter_lock.threading, "active_count", lambda: 2)
        assert list(interpreter_lock.sharing(items, every)) == items
    assert slept == [0] * -(-len(items) // every)  # once before each run of `every`


def test_sharing_gives_nothing_away_while_the_process_has_one_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(interpreter_lock.time, "sleep", slept.append)
    monkeypatch.setattr(interpreter_lock.threading, "active_count", lambda: 1)
    assert list(interpreter_lock.sharing(range(100), 4)) == list(range(100))
    assert slept == []  # nobody to give the lock to: each give-away costs ~50 µs
