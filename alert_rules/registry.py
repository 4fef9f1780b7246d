"""The device registry the engine judges against: expected devices and where they are.

Passed in from outside (the engine does no I/O); deadman uses it to catch devices that
never reported, spatial rules use the coordinates and townships.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    id: str
    township: str = ""
    grid: str = ""
    lat: float = float("nan")
    lon: float = float("nan")
    link: str = "wired"  # "cellular" devices get the deadman grace period
    name: str = ""
