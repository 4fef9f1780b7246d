"""Plantower PMS5003 / PMS7003 / PMSA003 / PMS5003T frame decoding (pure: bytes in, frames out).

Frame (datasheet V2.3, Appendix I): `42 4D`, length `00 1C`, 13 big-endian words
(PM1/2.5/10 CF=1, PM1/2.5/10 atmospheric, counts >0.3/0.5/1/2.5/5/10 µm per 0.1 L,
reserved), then the 16-bit sum of bytes 0-29. Mode/sleep commands are answered with an
8-byte frame of length `00 04`, which is not a reading. The PMS5003T puts temperature
and RH (×10) where the >5 µm and >10 µm counts are (PMS5003T datasheet, data 11-12).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

HEADER = b"\x42\x4d"
DATA_LEN = 28
DATA_FRAME_SIZE = 32
ACK_LEN = 4
ACK_FRAME_SIZE = 8
#: Datasheet: effective range 0-500 µg/m³, maximum range ≥ 1000 µg/m³.
PM_RANGE_MAX = 1000.0


@dataclass(frozen=True, slots=True)
class PmsFrame:
    """One decoded data frame. Mass in µg/m³, counts per 0.1 L."""

    pm1_0_cf1: int
    pm2_5_cf1: int
    pm10_cf1: int
    pm1_0: int
    pm2_5: int
    pm10: int
    n0_3: int
    n0_5: int
    n1_0: int
    n2_5: int
    n5_0: int
    n10: int
    reserved: int

    @property
    def all_zero(self) -> bool:
        """Warm-up frames after wake carry zeros everywhere."""
        return not any(
            (self.pm1_0_cf1, self.pm2_5_cf1, self.pm10_cf1, self.pm1_0, self.pm2_5, self.pm10,
             self.n0_3, self.n0_5, self.n1_0, self.n2_5, self.n5_0, self.n10)
        )

    @property
    def warming_up(self) -> bool:
        return self.all_zero

    def fields(self) -> dict[str, float | int]:
        return {
            "pm1_0": self.pm1_0, "pm2_5": self.pm2_5, "pm10": self.pm10,
            "pm1_0_cf1": self.pm1_0_cf1, "pm2_5_cf1": self.pm2_5_cf1,
            "pm10_cf1": self.pm10_cf1, "n0_3": self.n0_3, "n0_5": self.n0_5,
            "n1_0": self.n1_0, "n2_5": self.n2_5, "n5_0": self.n5_0, "n10": self.n10,
        }


@dataclass(frozen=True, slots=True)
class PmsTFrame:
    """A PMS5003T frame: words 11-12 are temperature and RH ×10, not counts."""

    frame: PmsFrame

    @property
    def warming_up(self) -> bool:
        f = self.frame
        return not any((f.pm1_0, f.pm2_5, f.pm10, f.pm1_0_cf1, f.pm2_5_cf1, f.pm10_cf1, f.n0_3))

    def fields(self) -> dict[str, float | int]:
        out = self.frame.fields()
        del out["n5_0"], out["n10"]
        temp = self.frame.n5_0 - 0x10000 if self.frame.n5_0 & 0x8000 else self.frame.n5_0
        out["temperature_c"] = temp / 10
        out["humidity_pct"] = self.frame.n10 / 10
        return out


@dataclass(frozen=True, slots=True)
class PmsAck:
    """The 8-byte answer to a mode or sleep command."""

    command: int
    data: int


def decode_data_frame(frame: bytes) -> PmsFrame:
    """Decode one complete 32-byte frame; raise ValueError when it is not a valid one."""
    if len(frame) != DATA_FRAME_SIZE or frame[:2] != HEADER:
        raise ValueError("not a 32-byte PMS frame")
    length, *words, checksum = struct.unpack(">H13HH", frame[2:])
    if length != DATA_LEN:
        raise ValueError(f"frame length {length}, expected {DATA_LEN}")
    if sum(frame[:30]) & 0xFFFF != checksum:
        raise ValueError("checksum mismatch")
    return PmsFrame(*words)


def _ack_ok(buf: bytes | bytearray) -> bool:
    (checksum,) = struct.unpack(">H", bytes(buf[6:8]))
    return (sum(buf[:6]) & 0xFFFF) == int(checksum)


@dataclass
class PmsStreamDecoder:
    """Incremental decoder for a byte stream from the sensor.

    Resynchronises on `42 4D` followed by a valid length and checksum, never on a lone
    `42`: a checksum ending in 0x42 puts a 0x42 just before the next header.
    """

    errors: Counter[str] = field(default_factory=Counter)
    with_env: bool = False  # PMS5003T: temperature and RH instead of the last two counts
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[object]:
        self._buf += data
        out: list[object] = []
        buf = self._buf
        while True:
            start = buf.find(HEADER)
            if start < 0:
                # Keep a trailing 0x42: it may be the first half of a header.
                keep = 1 if buf.endswith(b"\x42") else 0
                if len(buf) > keep:
                    self.errors["framing"] += 1
                del buf[: len(buf) - keep]
                break
            if start > 0:
                self.errors["framing"] += 1
                del buf[:start]
            if len(buf) < 4:
                break
            length = (buf[2] << 8) | buf[3]
            if length == DATA_LEN:
                if len(buf) < DATA_FRAME_SIZE:
                    break
                try:
                    frame = decode_data_frame(bytes(buf[:DATA_FRAME_SIZE]))
                except ValueError:
                    self.errors["checksum"] += 1
                    del buf[:2]  # a bad frame: look for the next header inside it
                    continue
                out.append(PmsTFrame(frame) if self.with_env else frame)
                del buf[:DATA_FRAME_SIZE]
            elif length == ACK_LEN:
                if len(buf) < ACK_FRAME_SIZE:
                    break
                if _ack_ok(buf):
                    out.append(PmsAck(command=buf[4], data=buf[5]))
                    del buf[:ACK_FRAME_SIZE]
                else:
                    self.errors["checksum"] += 1
                    del buf[:2]
            else:
                self.errors["framing"] += 1
                del buf[:2]
        return out


def command(cmd: int, data: int) -> bytes:
    """Host command `42 4D CMD DH DL` + 16-bit sum (datasheet Appendix II)."""
    body = HEADER + bytes([cmd, (data >> 8) & 0xFF, data & 0xFF])
    return body + struct.pack(">H", sum(body) & 0xFFFF)


CMD_PASSIVE = command(0xE1, 0x00)
CMD_ACTIVE = command(0xE1, 0x01)
CMD_READ = command(0xE2, 0x00)
CMD_SLEEP = command(0xE4, 0x00)
CMD_WAKE = command(0xE4, 0x01)
