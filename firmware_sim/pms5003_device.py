"""A simulated PMS5003 on a pseudo-terminal: active/passive mode, sleep/wake, warm-up."""

from __future__ import annotations

import random
import select
import time
from dataclasses import dataclass, field

from firmware_sim import pms5003_firmware as fw
from firmware_sim.pty_port import PtyPort
from firmware_sim.scenarios import Profile


@dataclass
class Pms5003Device:
    port: PtyPort
    profile: Profile
    frame_period_s: float = 1.0  # the datasheet's active-mode interval at stable readings
    warmup_s: float = 30.0  # all-zero frames until the fan and laser settle
    seed: int = 0
    active: bool = True
    asleep: bool = False
    frames_sent: int = 0
    _rx: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._t0 = time.monotonic()
        self._woke = self._t0

    def frame_now(self) -> bytes:
        now = time.monotonic()
        if now - self._woke < self.warmup_s:
            return fw.data_frame(fw.PmsValues(*([0] * 12)))
        return fw.data_frame(fw.values_for(self.profile(now - self._t0)))

    def handle(self, cmd: int, data: int) -> None:
        if cmd == fw.CMD_READ and not self.asleep:
            self.port.write(self.frame_now())
        elif cmd == fw.CMD_MODE:
            self.active = bool(data & 0xFF)
            self.port.write(fw.ack_frame(cmd, data & 0xFF))
        elif cmd == fw.CMD_SLEEP:
            wake = bool(data & 0xFF)
            if wake and self.asleep:
                self._woke = time.monotonic()
            self.asleep = not wake
            self.port.write(fw.ack_frame(cmd, data & 0xFF))

    def run(self, seconds: float | None = None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        next_frame = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            timeout = max(0.0, next_frame - time.monotonic())
            ready, _, _ = select.select([self.port.master], [], [], timeout)
            if ready:
                self._rx += self.port.read()
                while (parsed := fw.parse_command(self._rx)) is not None:
                    self.handle(*parsed)
            if time.monotonic() >= next_frame:
                next_frame += self.frame_period_s
                if self.active and not self.asleep:
                    self.port.write(self.frame_now())
                    self.frames_sent += 1
