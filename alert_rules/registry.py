"""The device registry the engine judges against: expected devices and where they are.

Passed in from outside (the engine does no I/O); deadman uses it to catch devices that
never reported, spatial rules use the coordinates and townships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Device:
    id: str
    township: str = ""
    grid: str = ""
    lat: float = float("nan")
    lon: float = float("nan")
    link: str = "wired"  # "cellular" devices get the deadman grace period
    name: str = ""


class Registered(Protocol):
    """What the engine reads of a registry entry: a `Device`, or any record with these
    fields (the collector passes its own registry entries as they are: 100,000 copies
    made at each start-up and reload cost 0.4 s). A reload compares only these fields
    (`engine._same_entry`): an entry that carries more (contacts, say) and changed only
    there is no news to the rules."""

    @property
    def id(self) -> str: ...
    @property
    def township(self) -> str: ...
    @property
    def grid(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def link(self) -> str: ...
    @property
    def name(self) -> str: ...
