"""The run loop every simulated UART sensor shares: periodic frames, commands, faults."""

from __future__ import annotations

import select
import threading
import time
from dataclasses import dataclass, field

from firmware_sim.faults import FaultPlan
from firmware_sim.pty_port import PtyPort


@dataclass
class UartDevice:
    """Subclasses give `periodic()` (a frame or None), `on_bytes()`, `bad_checksum()`,
    `ack()`. Every frame written goes through the fault plan."""

    port: PtyPort
    frame_period_s: float = 1.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    frames_sent: int = 0
    woken_at: float | None = None  # seconds since start of the last wake/mode command

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()
        self._rx = bytearray()
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    # --- subclass hooks -----------------------------------------------------------------

    def periodic(self) -> bytes | None:
        raise NotImplementedError

    def on_bytes(self, rx: bytearray) -> None:
        raise NotImplementedError

    def bad_checksum(self, frame: bytes) -> bytes:
        raise NotImplementedError

    def ack(self) -> bytes:
        raise NotImplementedError

    # --- output -------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self.faults.silent(self.elapsed(), self.woken_at):
            return
        self.port.write(self.faults.mangle(frame, self.bad_checksum, self.ack()))
        self.frames_sent += 1

    def _vanish(self) -> None:
        """Close the pty and remove its link, then bring up a new one at the same path."""
        link = self.port.link
        self.port.close()
        time.sleep(self.faults.vanish_for)
        self.port = PtyPort(link)
        self.faults.vanish_at = None

    def run(self, seconds: float | None = None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        next_frame = time.monotonic()
        while (deadline is None or time.monotonic() < deadline) and not self.stopped.is_set():
            if self.faults.vanish_at is not None and self.elapsed() >= self.faults.vanish_at:
                self._vanish()
            timeout = max(0.0, min(next_frame - time.monotonic(), 0.5))
            ready, _, _ = select.select([self.port.master], [], [], timeout)
            if ready:
                self._rx += self.port.read()
                self.on_bytes(self._rx)
            if time.monotonic() >= next_frame:
                next_frame += self.frame_period_s
                frame = self.periodic()
                if frame is not None:
                    self.send(frame)
