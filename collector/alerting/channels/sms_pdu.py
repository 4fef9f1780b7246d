"""SMS PDUs (3GPP TS 23.040 / 23.038): SMS-SUBMIT in UCS2 with concatenation, SMS-DELIVER.

Chinese needs UCS2 (DCS 0x08): 140 octets hold 70 characters. Longer texts go as parts
joined by a User Data Header (IEI 0x00, 8-bit reference: 6 octets), leaving 134 octets =
67 characters per part; only PDU mode (`AT+CMGF=0`) can send a UDH.
"""

from __future__ import annotations

from dataclasses import dataclass

UCS2_SINGLE_CHARS = 70  # TS 23.038: 140 octets / 2
UCS2_PART_UNITS = 67  # (140 - 6 octets of UDH) / 2
# TS 23.038 6.2.1 GSM 7-bit default alphabet (the basic table; escapes are not decoded).
GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


class PduError(ValueError):
    """A PDU from the modem could not be decoded."""


@dataclass(frozen=True)
class Submit:
    hex: str  # the whole PDU, SMSC part included
    tpdu_octets: int  # what AT+CMGS=<n> is told (TS 27.005 3.5.1: excludes the SMSC part)


@dataclass(frozen=True)
class Deliver:
    sender: str
    text: str
    concat: tuple[int, int, int] | None  # (reference, total, sequence) when a part


def swap_semi_octets(digits: str) -> str:
    """TS 23.040 9.1.2.3: digits in swapped nibbles, padded with F."""
    if len(digits) % 2:
        digits += "F"
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))


def encode_address(number: str) -> str:
    """TP-DA: length in digits, type 0x91 (international) or 0x81 (unknown), digits."""
    intl = number.startswith("+")
    digits = number.lstrip("+")
    if not digits.isdigit():
        raise ValueError(f"phone number {number!r}: expected digits, e.g. +8613800000000")
    return f"{len(digits):02X}{'91' if intl else '81'}{swap_semi_octets(digits)}"


def split_ucs2(text: str) -> list[bytes]:
    """UTF-16-BE parts: one if it fits in 70 characters, else 67-unit parts.

    A surrogate pair (characters beyond the BMP) is never split across parts.
    """
    data = text.encode("utf-16-be")
    if len(data) <= UCS2_SINGLE_CHARS * 2:
        return [data]
    parts: list[bytes] = []
    i = 0
    while i < len(data):
        end = min(i + UCS2_PART_UNITS * 2, len(data))
        if end < len(data) and 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate last
            end -= 2
        parts.append(data[i:end])
        i = end
    return parts


def encode_submit(number: str, text: str, reference: int) -> list[Submit]:
    """SMS-SUBMIT PDUs in UCS2, validity 24 h; several with a UDH if the text is long."""
    parts = split_ucs2(text)
    total = len(parts)
    if total > 255:
        raise ValueError(f"text of {len(text)} characters needs more than 255 parts")
    out: list[Submit] = []
    for seq, ud in enumerate(parts, start=1):
        udh = b""
        first = 0x11  # TS 23.040 9.2.3.1: SMS-SUBMIT, relative validity period present
        if total > 1:
            first |= 0x40  # TP-UDHI
            udh = bytes([0x05, 0x00, 0x03, reference & 0xFF, total, seq])
        body = udh + ud
        # MR 00, DA, PID 00, DCS 08 (UCS2), VP A7 (24 hours, TS 23.040 9.2.3.12.1)
        tpdu = f"{first:02X}00{encode_address(number)}0008A7{len(body):02X}{body.hex().upper()}"
        out.append(Submit(hex="00" + tpdu, tpdu_octets=len(tpdu) // 2))
    return out


def _unpack_gsm7(data: bytes, septets: int, skip_bits: int) -> str:
    bits = int.from_bytes(data, "little")
    chars = []
    for i in range(septets):
        pos = skip_bits + 7 * i
        code = (bits >> pos) & 0x7F
        chars.append(GSM7[code] if code < len(GSM7) else "?")
    return "".join(chars)


def decode_deliver(pdu_hex: str) -> Deliver:
    """SMS-DELIVER as `AT+CMGR` returns it in PDU mode (GSM 7-bit or UCS2)."""
    try:
        raw = bytes.fromhex(pdu_hex.strip())
        i = 1 + raw[0]  # skip SMSC information
        first = raw[i]
        i += 1
        if first & 0x03 != 0x00:
            raise PduError(f"not an SMS-DELIVER (first octet {first:02X})")
        digits, atype = raw[i], raw[i + 1]
        n = (digits + 1) // 2
        addr = raw[i + 2:i + 2 + n].hex().upper()
        number = "".join(addr[k + 1] + addr[k] for k in range(0, len(addr), 2))[:digits]
        sender = ("+" if atype == 0x91 else "") + number
        i += 2 + n
        dcs = raw[i + 1]
        i += 2 + 7  # PID, DCS, SCTS
        udl = raw[i]
        ud = raw[i + 1:]
        concat = None
        udh_len = 0
        if first & 0x40:
            udh_len = ud[0] + 1
            if ud[1] == 0x00 and ud[2] == 0x03:
                concat = (ud[3], ud[4], ud[5])
        alphabet = (dcs >> 2) & 0x03
        if alphabet == 2:  # UCS2
            text = ud[udh_len:udl].decode("utf-16-be")
        elif alphabet == 0:  # GSM 7-bit; a UDH is padded to a septet boundary
            skip = (udh_len * 8 + 6) // 7 * 7 if udh_len else 0
            text = _unpack_gsm7(ud, udl - skip // 7, skip)
        else:
            raise PduError(f"8-bit data SMS (DCS {dcs:02X}) is not text")
    except (IndexError, ValueError) as exc:
        if isinstance(exc, PduError):
            raise
        raise PduError(f"malformed PDU {pdu_hex[:60]!r}: {exc}") from exc
    return Deliver(sender=sender, text=text, concat=concat)
