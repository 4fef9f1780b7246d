"""Plantower PMS5003 firmware behaviour: frames and command handling, from the datasheet.

Written independently of edge_agent's decoder so each checks the other.
Source: Plantower PMS5003 datasheet V2.3 (2016), "Appendix I: transport protocol".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

HEADER = b"\x42\x4d"
# Command bytes (datasheet Appendix II): 0xE2 read (passive), 0xE1 mode, 0xE4 sleep/wake.
CMD_READ = 0xE2
CMD_MODE = 0xE1
CMD_SLEEP = 0xE4


@dataclass(frozen=True)
class PmsValues:
    """What the sensor reports; mass in µg/m³, counts per 0.1 L."""

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
    reserved: int = 0x9700  # firmware version / error code byte pair on real units


def data_frame(v: PmsValues) -> bytes:
    """A 32-byte frame: header, length 28 (0x001C), 13 big-endian words, sum of bytes 0-29."""
    words = (
        v.pm1_0_cf1, v.pm2_5_cf1, v.pm10_cf1, v.pm1_0, v.pm2_5, v.pm10,
        v.n0_3, v.n0_5, v.n1_0, v.n2_5, v.n5_0, v.n10, v.reserved,
    )
    body = HEADER + struct.pack(">H13H", 28, *(w & 0xFFFF for w in words))
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def ack_frame(cmd: int, data_low: int) -> bytes:
    """The 8-byte answer to a mode or sleep command (length 0x0004): not a reading."""
    body = HEADER + bytes([0x00, 0x04, cmd, data_low])
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def parse_command(buf: bytearray) -> tuple[int, int] | None:
    """Take one 7-byte host command `42 4D CMD DH DL CSH CSL` off the front of buf.

    Returns (cmd, data) or None when no complete valid command is there; leading bytes
    that cannot start a command are discarded, as the firmware does.
    """
    while True:
        start = buf.find(HEADER)
        if start < 0:
            del buf[: max(0, len(buf) - 1)]
            return None
        del buf[:start]
        if len(buf) < 7:
            return None
        frame = bytes(buf[:7])
        if (sum(frame[:5]) & 0xFFFF) != struct.unpack(">H", frame[5:7])[0]:
            del buf[:1]
            continue
        del buf[:7]
        return frame[2], (frame[3] << 8) | frame[4]


def command(cmd: int, data: int) -> bytes:
    """Encode a host command (used by the simulator's tests)."""
    body = HEADER + bytes([cmd, (data >> 8) & 0xFF, data & 0xFF])
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def values_for(pm2_5: float, rng_jitter: float = 0.0) -> PmsValues:
    """Plausible frame values for an atmospheric PM2.5 level (µg/m³).

    Ratios follow typical urban aerosol: PM1 ≈ 0.7·PM2.5, PM10 ≈ 1.3·PM2.5; CF=1 equals
    atmospheric below 30 µg/m³ and reads higher above it, as Plantower units do.
    """
    pm25 = max(0.0, pm2_5 + rng_jitter)
    pm1 = round(pm25 * 0.7)
    pm10 = round(pm25 * 1.3)
    pm25i = round(pm25)
    cf = 1.0 if pm25 < 30 else 1.0 + min(0.5, (pm25 - 30) / 300)
    n0_3 = round(pm25 * 110 + 150)
    return PmsValues(
        pm1_0_cf1=round(pm1 * cf), pm2_5_cf1=round(pm25i * cf), pm10_cf1=round(pm10 * cf),
        pm1_0=pm1, pm2_5=pm25i, pm10=pm10,
        n0_3=n0_3, n0_5=round(n0_3 * 0.3), n1_0=round(n0_3 * 0.06),
        n2_5=round(n0_3 * 0.01), n5_0=round(n0_3 * 0.002), n10=round(n0_3 * 0.0005),
    )



def with_checksum_low_byte(v: PmsValues, low: int) -> PmsValues:
    """The same values with the reserved word adjusted so the checksum ends in `low`.

    A checksum ending in 0x42 leaves a 0x42 just before the next frame's `42 4D`: a
    decoder that resyncs on a lone 0x42 loses the next frame.
    """
    base = sum(data_frame(replace(v, reserved=0))[:30])
    # The reserved word's low byte adds directly to the sum; pick it to land on `low`.
    return replace(v, reserved=(low - base) % 256)
