"""The agent's decoders against real captured frames, the datasheets, and random bytes."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drivers import pms5003, sds011


def _hexdump(path: Path) -> bytes:
    """Bytes of an `xxd`-style dump: `offset: hex hex ...  ascii`."""
    out = bytearray()
    for line in path.read_text().splitlines():
        hexpart = line.split(":", 1)[1].split("  ")[0]
        out += bytes.fromhex(hexpart.replace(" ", ""))
    return bytes(out)


def _csv(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        rows = list(csv.reader(f, skipinitialspace=True))
    return [dict(zip(rows[0], map(float, r), strict=True)) for r in rows[1:]]


def test_real_pms5003_capture_decodes_to_the_reference_values(shared_data: Path) -> None:
    d = shared_data / "frames" / "pypms"
    dec = pms5003.PmsStreamDecoder()
    frames = dec.feed(_hexdump(d / "PMSx003.hexdump"))
    expected = _csv(d / "PMSx003.csv")
    assert len(frames) == len(expected) == 10 and not dec.errors
    for f, row in zip(frames, expected, strict=True):
        assert isinstance(f, pms5003.PmsFrame)
        fields = f.fields()
        assert fields["pm2_5"] == row["pm25"] and fields["pm10"] == row["pm10"]
        assert fields["pm2_5_cf1"] == row["raw25"] and fields["pm1_0_cf1"] == row["raw01"]
        # The csv gives counts per cm³; the frame (and the wire format) per 0.1 L.
        assert fields["n0_3"] == round(row["n0_3"] * 100)
        assert fields["n2_5"] == round(row["n2_5"] * 100)


def test_real_pms5003t_capture_gives_temperature_and_humidity(shared_data: Path) -> None:
    d = shared_data / "frames" / "pypms"
    dec = pms5003.PmsStreamDecoder(with_env=True)
    frames = dec.feed(_hexdump(d / "PMS5003T.hexdump"))
    expected = _csv(d / "PMS5003T.csv")
    assert len(frames) == len(expected) == 10
    for f, row in zip(frames, expected, strict=True):
        assert isinstance(f, pms5003.PmsTFrame)
        fields = f.fields()
        assert fields["temperature_c"] == row["temp"]
        assert fields["humidity_pct"] == row["rhum"]
        assert fields["pm2_5"] == row["pm25"] and "n10" not in fields


def test_real_sds011_capture_decodes_to_the_reference_values(shared_data: Path) -> None:
    d = shared_data / "frames" / "pypms"
    dec = sds011.SdsStreamDecoder()
    frames = dec.feed(_hexdump(d / "SDS01x.hexdump"))
    expected = _csv(d / "SDS01x.csv")
    assert len(frames) == len(expected) == 10 and not dec.errors
    for f, row in zip(frames, expected, strict=True):
        assert isinstance(f, sds011.SdsFrame)
        assert f.fields() == {"pm2_5": row["pm25"], "pm10": row["pm10"]}


def test_pms_commands_match_the_datasheet_bytes() -> None:
    # Plantower datasheet Appendix II: 42 4D E1 00 00 01 70 is "passive mode".
    assert pms5003.CMD_PASSIVE.hex() == "424de100000170"
    assert pms5003.CMD_ACTIVE.hex() == "424de100010171"
    assert pms5003.CMD_READ.hex() == "424de200000171"
    assert pms5003.CMD_SLEEP.hex() == "424de400000173"


def test_sds011_commands_match_the_datasheet_examples() -> None:
    # Protocol V1.3 examples: query data, set sleep, set query mode (device FFFF).
    assert sds011.CMD_QUERY.hex() == "aab404000000000000000000000000ffff02ab"
    assert sds011.CMD_SLEEP.hex() == "aab406010000000000000000000000ffff05ab"
    assert sds011.set_query_mode(True).hex() == "aab402010100000000000000000000ffff02ab"
    assert sds011.set_working_period(1).hex() == "aab408010100000000000000000000ffff08ab"


def test_checksum_ending_in_0x42_does_not_lose_the_next_frame() -> None:
    words = [0] * 13
    for reserved in range(256):  # find a frame whose checksum ends in 0x42
        words[1], words[12] = 30, reserved
        body = b"BM" + struct.pack(">H13H", 28, *words)
        if sum(body) & 0xFF == 0x42:
            break
    trap = body + struct.pack(">H", sum(body) & 0xFFFF)
    assert trap[-1] == 0x42
    dec = pms5003.PmsStreamDecoder()
    out = dec.feed(trap + trap + trap)
    assert len(out) == 3 and not dec.errors


def test_ack_frames_are_not_readings_and_truncated_frames_are_skipped() -> None:
    good = _pms_frame(12)
    ack = bytes.fromhex("424d0004e10001") + bytes([(0x42 + 0x4D + 4 + 0xE1 + 1) & 0xFF])
    ack = ack[:6] + struct.pack(">H", sum(ack[:6]))
    dec = pms5003.PmsStreamDecoder()
    out = dec.feed(good[:17] + ack + good + good[:5] + good)
    kinds = [type(x).__name__ for x in out]
    assert kinds == ["PmsAck", "PmsFrame", "PmsFrame"]
    assert dec.errors["checksum"] + dec.errors["framing"] >= 1


def _pms_frame(pm25: int) -> bytes:
    words = [pm25, pm25, pm25, pm25, pm25, pm25, 500, 150, 30, 5, 1, 0, 0x9700]
    body = b"BM" + struct.pack(">H13H", 28, *words)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def _sds_frame(pm25_tenths: int) -> bytes:
    six = struct.pack("<HH", pm25_tenths, pm25_tenths + 7) + b"\xa1\xb2"
    return b"\xaa\xc0" + six + bytes([sum(six) & 0xFF, 0xAB])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 400)))
def test_pms_decoder_fuzz_random_bytes_never_raise(noise: bytes, chunks: list[int]) -> None:
    dec = pms5003.PmsStreamDecoder()
    pos = 0
    for n in [*chunks, len(noise)]:
        dec.feed(noise[pos : pos + n])
        pos += n


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=50), st.integers(1, 999)), min_size=1, max_size=8),
       st.integers(1, 64))
def test_pms_decoder_fuzz_finds_every_frame_in_noise(
    parts: list[tuple[bytes, int]], chunk: int
) -> None:
    stream = b"".join(noise + _pms_frame(v) for noise, v in parts)
    dec = pms5003.PmsStreamDecoder()
    found: list[object] = []
    for i in range(0, len(stream), chunk):
        found += dec.feed(stream[i : i + chunk])
    values = [f.pm2_5 for f in found if isinstance(f, pms5003.PmsFrame)]
    it = iter(values)  # every embedded frame, in order (noise may not add false ones)
    assert all(any(v == w for w in it) for _, v in parts), (values, [v for _, v in parts])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=30), st.integers(0, 9999)), min_size=1, max_size=8),
       st.integers(1, 16))
def test_sds_decoder_fuzz_finds_every_frame_in_noise(
    parts: list[tuple[bytes, int]], chunk: int
) -> None:
    stream = b"".join(noise + _sds_frame(v) for noise, v in parts)
    dec = sds011.SdsStreamDecoder()
    found: list[object] = []
    for i in range(0, len(stream), chunk):
        found += dec.feed(stream[i : i + chunk])
    values = [f.pm2_5_tenths for f in found if isinstance(f, sds011.SdsFrame)]
    it = iter(values)
    assert all(any(v == w for w in it) for _, v in parts), (values, [v for _, v in parts])
