"""Durations in rule files: `30s`, `5m`, `1h`, `1d`, or a number of seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(text: str | int | float) -> int:
    """Milliseconds in a duration; raise ValueError naming the bad text."""
    if isinstance(text, bool):
        raise ValueError(f"duration {text!r}: expected e.g. 30s, 5m, 1h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return int(text * 1000)
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"duration {text!r}: expected e.g. 30s, 5m, 1h")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])
