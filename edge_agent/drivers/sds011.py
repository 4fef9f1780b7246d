"""Nova Fitness SDS011 frame decoding and commands (pure: bytes in, frames out).

Source: "Laser Dust Sensor Control Protocol V1.3" (Nova Fitness, 2015).
Data frame, 10 bytes: `AA C0 P25L P25H P10L P10H ID1 ID2 CHK AB`, values in 0.1 µg/m³,
CHK = low byte of the sum of bytes 2-7. Replies to commands are `AA C5 ...` with the same
layout and are not readings. Commands are 19 bytes: `AA B4` + 15 data bytes (data 1 is the
command, data 14-15 the device id, `FF FF` = any) + CHK (sum of the data bytes) + `AB`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

HEAD = 0xAA
TAIL = 0xAB
DATA_CMD = 0xC0
REPLY_CMD = 0xC5
FRAME_SIZE = 10
#: Datasheet: measuring range 0.0-999.9 µg/m³.
PM_RANGE_MAX = 999.9

# Command ids (data byte 1), protocol V1.3 section "command".
SET_REPORTING_MODE = 2
QUERY_DATA = 4
SET_DEVICE_ID = 5
SET_SLEEP_WORK = 6
FIRMWARE_VERSION = 7
SET_WORKING_PERIOD = 8


@dataclass(frozen=True, slots=True)
class SdsFrame:
    """One reading: PM2.5 and PM10 in µg/m³ (the frame carries tenths)."""

    pm2_5_tenths: int
    pm10_tenths: int
    device_id: int

    @property
    def warming_up(self) -> bool:
        return self.pm2_5_tenths == 0 and self.pm10_tenths == 0

    def fields(self) -> dict[str, float | int]:
        return {"pm2_5": self.pm2_5_tenths / 10, "pm10": self.pm10_tenths / 10}


@dataclass(frozen=True, slots=True)
class SdsReply:
    """An `AA C5` answer to a command: not a reading."""

    command: int
    data: bytes
    device_id: int


def _checksum(payload: bytes | bytearray) -> int:
    return sum(payload) & 0xFF


def decode_frame(frame: bytes) -> SdsFrame | SdsReply:
    """Decode one complete 10-byte frame; raise ValueError when it is not a valid one."""
    if len(frame) != FRAME_SIZE or frame[0] != HEAD or frame[9] != TAIL:
        raise ValueError("not a 10-byte SDS011 frame")
    if _checksum(frame[2:8]) != frame[8]:
        raise ValueError("checksum mismatch")
    device_id = (frame[6] << 8) | frame[7]
    if frame[1] == DATA_CMD:
        return SdsFrame(frame[2] | (frame[3] << 8), frame[4] | (frame[5] << 8), device_id)
    if frame[1] == REPLY_CMD:
        return SdsReply(frame[2], bytes(frame[3:6]), device_id)
    raise ValueError(f"unknown frame kind 0x{frame[1]:02X}")


@dataclass
class SdsStreamDecoder:
    """Incremental decoder: resyncs on `AA C0`/`AA C5` with a valid checksum and tail."""

    errors: Counter[str] = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[object]:
        self._buf += data
        buf = self._buf
        out: list[object] = []
        while True:
            start = buf.find(HEAD)
            if start < 0:
                if buf:
                    self.errors["framing"] += 1
                buf.clear()
                break
            if start > 0:
                self.errors["framing"] += 1
                del buf[:start]
            if len(buf) < 2:
                break
            if buf[1] not in (DATA_CMD, REPLY_CMD):
                self.errors["framing"] += 1
                del buf[:1]
                continue
            if len(buf) < FRAME_SIZE:
                break
            if buf[9] != TAIL:
                self.errors["framing"] += 1
                del buf[:1]
                continue
            try:
                out.append(decode_frame(bytes(buf[:FRAME_SIZE])))
            except ValueError:
                self.errors["checksum"] += 1
                del buf[:1]
                continue
            del buf[:FRAME_SIZE]
        return out


def command(cmd: int, data: bytes = b"", device_id: int = 0xFFFF) -> bytes:
    """A 19-byte host command: `AA B4 cmd data… (13 bytes) ID1 ID2 CHK AB`."""
    if len(data) > 12:
        raise ValueError("SDS011 command data is at most 12 bytes")
    payload = bytes([cmd]) + data.ljust(12, b"\x00") + bytes([device_id >> 8, device_id & 0xFF])
    return bytes([HEAD, 0xB4]) + payload + bytes([_checksum(payload), TAIL])


def set_query_mode(query: bool) -> bytes:
    """Reporting mode: active (the sensor reports every period) or query (on request)."""
    return command(SET_REPORTING_MODE, bytes([1, 1 if query else 0]))


def set_working(work: bool) -> bytes:
    """Sleep (fan and laser off) or work."""
    return command(SET_SLEEP_WORK, bytes([1, 1 if work else 0]))


def set_working_period(minutes: int) -> bytes:
    """0 = continuous (a reading per second); 1-30 = work 30 s, report, sleep the rest."""
    if not 0 <= minutes <= 30:
        raise ValueError("working period is 0..30 minutes")
    return command(SET_WORKING_PERIOD, bytes([1, minutes]))


CMD_QUERY = command(QUERY_DATA)
CMD_WORK = set_working(True)
CMD_SLEEP = set_working(False)
