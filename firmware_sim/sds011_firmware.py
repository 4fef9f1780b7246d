"""Nova Fitness SDS011 firmware behaviour: frames and commands, from the datasheet.

Written independently of edge_agent's decoder so each checks the other.
Source: "Laser Dust Sensor Control Protocol V1.3" (Nova Fitness, 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

# Command ids (data byte 1 of a host command), protocol V1.3.
REPORTING_MODE = 2
QUERY = 4
DEVICE_ID = 5
SLEEP_WORK = 6
FIRMWARE = 7
WORKING_PERIOD = 8
COMMAND_SIZE = 19


def _frame(kind: int, six: bytes) -> bytes:
    """`AA kind d1..d6 CHK AB`; CHK = low byte of the sum of the six data bytes."""
    return bytes([0xAA, kind]) + six + bytes([sum(six) % 256, 0xAB])


def data_frame(pm2_5: float, pm10: float, device_id: int) -> bytes:
    """A reading: values in tenths of µg/m³, little-endian, then the device id."""
    p25 = max(0, min(9999, round(pm2_5 * 10)))
    p10 = max(0, min(9999, round(pm10 * 10)))
    six = bytes([p25 & 0xFF, p25 >> 8, p10 & 0xFF, p10 >> 8,
                 (device_id >> 8) & 0xFF, device_id & 0xFF])
    return _frame(0xC0, six)


def reply_frame(cmd: int, d2: int, d3: int, d4: int, device_id: int) -> bytes:
    """An `AA C5` answer to a command: not a reading."""
    return _frame(0xC5, bytes([cmd, d2, d3, d4, (device_id >> 8) & 0xFF, device_id & 0xFF]))


@dataclass(frozen=True)
class HostCommand:
    cmd: int
    data: bytes  # data bytes 2-13
    target: int  # device id, 0xFFFF = any


def parse_command(buf: bytearray) -> HostCommand | None:
    """Take one 19-byte `AA B4 … CHK AB` command off the front of buf, skipping junk."""
    while True:
        start = buf.find(b"\xaa\xb4")
        if start < 0:
            del buf[: max(0, len(buf) - 1)]
            return None
        del buf[:start]
        if len(buf) < COMMAND_SIZE:
            return None
        raw = bytes(buf[:COMMAND_SIZE])
        payload = raw[2:17]
        if raw[18] != 0xAB or sum(payload) % 256 != raw[17]:
            del buf[:1]
            continue
        del buf[:COMMAND_SIZE]
        return HostCommand(payload[0], payload[1:13], (payload[13] << 8) | payload[14])
