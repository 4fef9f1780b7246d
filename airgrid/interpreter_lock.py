"""Long loops on background threads that leave the ingest thread its turn.

CPython hands its interpreter lock to a waiting thread only after the holder has run for
the switch interval (5 ms), while the ingest thread gives the lock up at every I/O call
(a socket send, an SQLite statement) and must win it back each time. Beside a thread
that only computes (a registry parse of 100,000 rows), each of those calls cost the
ingest thread up to 5 ms: measured, a message's handling went from 0.04 ms to 10 ms
during a parse. Giving the lock away every few items keeps those waits to a fraction of
a millisecond. A give-away costs a sleep of the kernel's timer slack (about 50 µs), so
none is made while the process has no other thread; a loop that knows nobody waits (the
collector's start-up parse) does not share at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: items between two give-aways: ~0.1 ms of a registry row's parsing
EVERY = 16


def sharing(items: Iterable[T], every: int = EVERY) -> Iterator[T]:
    """`items`, giving the interpreter lock to any waiting thread every `every` of them."""
    for n, item in enumerate(items):
        if not n % every and threading.active_count() > 1:
            time.sleep(0)  # releases the lock; a waiting thread takes it at once
        yield item
