"""What every sensor driver offers the sampler and the serial reader."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Measurement(Protocol):
    """One decoded reading frame from a sensor, before sampling."""

    @property
    def warming_up(self) -> bool:
        """True for frames a sensor sends before its values are valid (all zero)."""
        ...

    def fields(self) -> dict[str, float | int]:
        """Values under wire-format field names (µg/m³, counts per 0.1 L, °C, %RH)."""
        ...


class StreamDecoder(Protocol):
    """Bytes in, frames out; counts each kind of bad input in `errors`; never raises."""

    errors: Counter[str]

    def feed(self, data: bytes) -> list[object]: ...


@dataclass(frozen=True)
class SerialProtocol:
    """How to talk to one sensor family over a UART.

    `configure(polled)` returns the bytes that put the sensor in active (False) or
    polled (True: passive / query) mode; `poll` asks a polled sensor for one frame.
    """

    model: str
    baudrate: int
    new_decoder: Callable[[], StreamDecoder]
    is_measurement: Callable[[object], bool]
    configure: Callable[[bool], bytes]
    poll: bytes
    wake: bytes
    sleep: bytes
    #: Largest value the sensor reports within its range, µg/m³ (from its datasheet).
    pm_range_max: float
