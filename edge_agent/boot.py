"""Which kernel boot this is: monotonic times are only comparable within one."""

from __future__ import annotations

import uuid
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """The kernel's boot id (Linux), or a fresh random id where there is none."""
    try:
        return _BOOT_ID.read_text().strip().replace("-", "")[:16]
    except OSError:
        return uuid.uuid4().hex[:16]
