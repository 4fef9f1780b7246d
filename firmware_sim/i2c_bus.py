"""An in-process I2C bus with a PMSA003I at 0x12: the object adafruit_pm25's PM25_I2C
talks to in place of Blinka's `busio.I2C` (there is no I2C bus here).

It speaks the bus's side of what busio offers: lock, write (a probe is an empty write),
and reads of the sensor's 32-byte frame (PMSA003I datasheet: the same frame as the UART
models, read at address 0x12). Faults: a wrong checksum, a missing device.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from firmware_sim import pms5003_firmware as fw

PMSA003I_ADDRESS = 0x12
_ENODEV = 19  # what Linux's i2c-dev gives when nobody ACKs the address


@dataclass
class FakeI2CBus:
    values: list[fw.PmsValues] = field(default_factory=list)
    address: int = PMSA003I_ADDRESS
    present: bool = True
    bad_checksum_every: int = 0  # every Nth read has a wrong checksum (0 = never)
    reads: int = 0
    _locked: bool = False

    def try_lock(self) -> bool:
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        self._locked = False

    def _check(self, address: int) -> None:
        if address != self.address or not self.present:
            raise OSError(_ENODEV, f"no device at 0x{address:02X}")

    def writeto(self, address: int, buffer: bytes, *, start: int = 0,
                end: int | None = None) -> None:
        self._check(address)

    def readfrom_into(self, address: int, buffer: bytearray, *, start: int = 0,
                      end: int | None = None) -> None:
        self._check(address)
        values = self.values[self.reads % len(self.values)] if self.values else \
            fw.PmsValues(*([0] * 12))
        self.reads += 1
        frame = fw.data_frame(values)
        if self.bad_checksum_every and self.reads % self.bad_checksum_every == 0:
            (checksum,) = struct.unpack(">H", frame[30:])
            frame = frame[:30] + struct.pack(">H", (checksum + 1) & 0xFFFF)
        end = len(buffer) if end is None else end
        buffer[start:end] = frame[: end - start]

    def deinit(self) -> None:
        """busio.I2C has it; nothing to release here."""
