"""The one way a test waits for something another thread or process does."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Ask `predicate` every `step` seconds until it is true or `timeout` seconds have passed.

    Returns whether it became true; it is asked once more at the deadline, so a slow last
    step does not turn a success into a timeout. Callers assert on the result (with what
    they saw as the message) rather than this raising: the assertion then says what failed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
