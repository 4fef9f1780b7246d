"""What goes wrong on a real serial line, played on purpose.

Per frame, with the given probabilities: garbage bytes before it, a corrupted checksum,
a truncated frame, an unsolicited command acknowledgement before it. On a schedule: the
sensor falls silent (until woken, or for a while), the port vanishes and comes back
(a USB adapter unplugged and plugged in again).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FaultPlan:
    garbage: float = 0.0  # probability of 1-40 random bytes before a frame
    bad_checksum: float = 0.0  # probability a frame's checksum is wrong
    truncate: float = 0.0  # probability a frame is cut short
    acks: float = 0.0  # probability of an acknowledgement frame before a frame
    silent_at: float | None = None  # seconds after start: stop sending
    silent_for: float | None = None  # None = until a wake / mode command arrives
    vanish_at: float | None = None  # seconds after start: the port disappears
    vanish_for: float = 3.0
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def silent(self, t: float, woken_at: float | None) -> bool:
        if self.silent_at is None or t < self.silent_at:
            return False
        if self.silent_for is None:
            return woken_at is None or woken_at < self.silent_at
        return t < self.silent_at + self.silent_for

    def mangle(
        self, frame: bytes, bad_checksum: Callable[[bytes], bytes], ack: bytes
    ) -> bytes:
        """The bytes that go on the wire in place of `frame`."""
        rng = self._rng
        out = b""
        if self.garbage and rng.random() < self.garbage:
            self._count("garbage")
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        if self.acks and rng.random() < self.acks:
            self._count("ack")
            out += ack
        if self.bad_checksum and rng.random() < self.bad_checksum:
            self._count("bad_checksum")
            return out + bad_checksum(frame)
        if self.truncate and rng.random() < self.truncate:
            self._count("truncated")
            return out + frame[: rng.randint(1, len(frame) - 1)]
        self._count("good")
        return out + frame
