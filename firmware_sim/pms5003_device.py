"""A simulated PMS5003 on a pseudo-terminal: active/passive mode, sleep/wake, warm-up."""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field

from firmware_sim import pms5003_firmware as fw
from firmware_sim.device_loop import UartDevice
from firmware_sim.scenarios import Profile


def _zero(t: float) -> float:
    return 0.0


@dataclass
class Pms5003Device(UartDevice):
    profile: Profile = _zero
    warmup_s: float = 30.0  # all-zero frames until the fan and laser settle
    seed: int = 0
    active: bool = True
    asleep: bool = False
    trap42: float = 0.0  # probability a frame is made to end in a 0x42 checksum
    _woke: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rng = random.Random(self.seed)
        self._woke = time.monotonic()

    def frame_now(self) -> bytes:
        now = time.monotonic()
        if now - self._woke < self.warmup_s:
            return fw.data_frame(fw.PmsValues(*([0] * 12)))
        values = fw.values_for(self.profile(now - self._t0))
        if self.trap42 and self._rng.random() < self.trap42:
            values = fw.with_checksum_low_byte(values, 0x42)
        return fw.data_frame(values)

    def handle(self, cmd: int, data: int) -> None:
        if cmd in (fw.CMD_MODE, fw.CMD_SLEEP):
            self.woken_at = self.elapsed()  # any command revives a silent sensor (fault)
        if cmd == fw.CMD_READ and not self.asleep:
            self.send(self.frame_now())
        elif cmd == fw.CMD_MODE:
            self.active = bool(data & 0xFF)
            self.port.write(fw.ack_frame(cmd, data & 0xFF))
        elif cmd == fw.CMD_SLEEP:
            wake = bool(data & 0xFF)
            if wake and self.asleep:
                self._woke = time.monotonic()
            self.asleep = not wake
            self.port.write(fw.ack_frame(cmd, data & 0xFF))

    def on_bytes(self, rx: bytearray) -> None:
        while (parsed := fw.parse_command(rx)) is not None:
            self.handle(*parsed)

    def periodic(self) -> bytes | None:
        if self.active and not self.asleep:
            return self.frame_now()
        return None

    def bad_checksum(self, frame: bytes) -> bytes:
        (checksum,) = struct.unpack(">H", frame[30:])
        return frame[:30] + struct.pack(">H", (checksum + 1 + self._rng.randrange(100)) & 0xFFFF)

    def ack(self) -> bytes:
        return fw.ack_frame(fw.CMD_MODE, 1 if self.active else 0)
