"""Is the system clock synchronised (NTP)? Read from the kernel with adjtimex(2)."""

from __future__ import annotations

import ctypes
import ctypes.util

_TIME_ERROR = 5  # adjtimex return value when the clock is not synchronised


class _Timex(ctypes.Structure):
    # struct timex is 208 bytes on 64-bit Linux; only `modes` (first field) is written.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]


def clock_synced() -> bool:
    """True when the kernel says the clock is synchronised; False when unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)
