"""A GSM modem (SIM800/SIM7600-style AT dialogue) on a pseudo-terminal.

It answers the commands an SMS sender uses (3GPP TS 27.005 / 27.007), records every SMS
it is asked to send — reassembling multipart PDUs back to the text — and can deliver an
incoming SMS, announced with `+CMTI` like a real module. PDUs are decoded and encoded here
from TS 23.040 on their own, independently of the collector's encoder, so each checks
the other.
"""

from __future__ import annotations

import json
import re
import select
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware_sim.pty_port import PtyPort

CTRL_Z, ESC = b"\x1a", b"\x1b"
# TS 23.038 6.2.1 basic GSM 7-bit alphabet, indexed by septet value.
GSM7 = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
CMS_NETWORK_OUT_OF_ORDER = 38  # TS 24.011 8.2.5.4 cause value
CMS_INVALID_PDU_PARAM = 304  # TS 27.005 3.2.5
CMS_INVALID_TEXT_PARAM = 305


@dataclass(frozen=True)
class SentSms:
    to: str
    text: str
    parts: int
    mode: str  # "pdu" or "text"
    at: float


@dataclass
class _Stored:
    sender: str
    text: str
    read: bool = False


def _digits(swapped: str, count: int) -> str:
    return "".join(swapped[i + 1] + swapped[i] for i in range(0, len(swapped), 2))[:count]


def _semi(digits: str) -> str:
    if len(digits) % 2:
        digits += "F"
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))


def parse_submit(pdu_hex: str) -> tuple[str, str, tuple[int, int, int] | None, int]:
    """(number, text, (ref, total, seq) | None, TPDU octets) from an SMS-SUBMIT PDU."""
    raw = bytes.fromhex(pdu_hex)
    i = 1 + raw[0]  # SMSC length octet and SMSC
    tpdu_octets = len(raw) - i
    first = raw[i]
    if first & 0x03 != 0x01:
        raise ValueError("not an SMS-SUBMIT")
    vpf = (first >> 3) & 0x03
    i += 2  # first octet, TP-MR
    n_digits, atype = raw[i], raw[i + 1]
    n = (n_digits + 1) // 2
    number = _digits(raw[i + 2:i + 2 + n].hex().upper(), n_digits)
    number = ("+" if atype == 0x91 else "") + number
    i += 2 + n
    dcs = raw[i + 1]
    i += 2
    i += {0: 0, 2: 1}.get(vpf, 7)  # TP-VP: absent, relative (1) or absolute/enhanced (7)
    udl = raw[i]
    ud = raw[i + 1:]
    concat = None
    skip = 0
    if first & 0x40:
        skip = ud[0] + 1
        if ud[1] == 0x00:
            concat = (ud[3], ud[4], ud[5])
        elif ud[1] == 0x08:  # 16-bit reference
            concat = (ud[3] << 8 | ud[4], ud[5], ud[6])
    if (dcs >> 2) & 0x03 != 2:
        raise ValueError(f"DCS {dcs:02X}: this modem model records UCS2 texts only")
    if len(ud) != udl:
        raise ValueError(f"UDL {udl} but {len(ud)} octets of user data")
    return number, ud[skip:].decode("utf-16-be"), concat, tpdu_octets


def build_deliver(sender: str, text: str, when: time.struct_time) -> str:
    """An SMS-DELIVER PDU: GSM 7-bit when the text allows, UCS2 otherwise."""
    intl = sender.startswith("+")
    digits = sender.lstrip("+")
    oa = f"{len(digits):02X}{'91' if intl else '81'}{_semi(digits)}"
    scts = _semi(time.strftime("%y%m%d%H%M%S", when)) + "00"  # TS 23.040 9.2.3.11, zone 0
    if all(c in GSM7 for c in text):
        bits = 0
        for k, c in enumerate(text):
            bits |= GSM7.index(c) << (7 * k)
        ud = bits.to_bytes((7 * len(text) + 7) // 8, "little")
        dcs, udl = 0x00, len(text)
    else:
        ud = text.encode("utf-16-be")
        dcs, udl = 0x08, len(ud)
    smsc_digits = _semi("8613800100500")  # an SMSC address; readers skip it by its length
    smsc = f"{1 + len(smsc_digits) // 2:02X}91{smsc_digits}"
    return f"{smsc}04{oa}00{dcs:02X}{scts}{udl:02X}{ud.hex().upper()}"


class GsmModem:
    def __init__(self, port: PtyPort, record: Path | None = None) -> None:
        self.port = port
        self.record = record
        self.echo = True
        self.pdu_mode = True  # TS 27.005: AT+CMGF default 0 (PDU)
        self.charset = "GSM"
        self.sent: list[SentSms] = []
        self.commands: list[str] = []
        self.storage: dict[int, _Stored] = {}
        self._fail_next: list[int] = []
        self._parts: dict[tuple[str, int], dict[int, str]] = {}
        self._mr = 0
        self._buf = b""
        self._cmgs: str | None = None  # the AT+CMGS argument while waiting for the body
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # -- what tests and the CLI drive ------------------------------------------------
    def fail_next(self, count: int, cause: int = CMS_NETWORK_OUT_OF_ORDER) -> None:
        """The next `count` sends are answered `+CMS ERROR: cause` (network trouble)."""
        with self._lock:
            self._fail_next.extend([cause] * count)

    def deliver(self, sender: str, text: str) -> int:
        """An SMS arrives: store it and announce `+CMTI: "SM",<index>`."""
        with self._lock:
            index = max(self.storage, default=0) + 1
            self.storage[index] = _Stored(sender, text)
        self.port.write(f'\r\n+CMTI: "SM",{index}\r\n'.encode())
        return index

    def run(self, seconds: float | None = None) -> None:
        end = None if seconds is None else time.monotonic() + seconds
        while not self.stopping.is_set() and (end is None or time.monotonic() < end):
            try:
                ready, _, _ = select.select([self.port.master], [], [], 0.05)
                data = self.port.read(4096) if ready else b""
            except (OSError, ValueError):  # the port was closed under us: stop
                return
            if data:
                self.feed(data)

    # -- the AT dialogue -----------------------------------------------------------
    def _reply(self, text: str) -> None:
        self.port.write(text.encode())

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if self._cmgs is not None:
                for end in (CTRL_Z, ESC):
                    k = self._buf.find(end)
                    if k >= 0:
                        body, self._buf = self._buf[:k], self._buf[k + 1:]
                        arg, self._cmgs = self._cmgs, None
                        if end == CTRL_Z:
                            self._finish_send(arg, body.decode(errors="replace").strip())
                        else:
                            self._reply("\r\nOK\r\n")  # send cancelled
                        break
                else:
                    return
                continue
            k = self._buf.find(b"\r")
            if k < 0:
                return
            line, self._buf = self._buf[:k], self._buf[k + 1:].lstrip(b"\n")
            if self.echo:
                self.port.write(line + b"\r")
            text = line.decode(errors="replace").strip()
            if text:
                self.commands.append(text)
                self._command(text)

    def _command(self, cmd: str) -> None:
        up = cmd.upper()
        if not up.startswith("AT"):
            self._reply("\r\nERROR\r\n")
            return
        body = cmd[2:]
        if up in ("AT", "ATZ", "AT&F"):
            self._reply("\r\nOK\r\n")
        elif up in ("ATE0", "ATE1"):
            self.echo = up == "ATE1"
            self._reply("\r\nOK\r\n")
        elif m := re.fullmatch(r"\+CMGF=([01])", body, re.I):
            self.pdu_mode = m.group(1) == "0"
            self._reply("\r\nOK\r\n")
        elif up == "AT+CMGF?":
            self._reply(f"\r\n+CMGF: {0 if self.pdu_mode else 1}\r\n\r\nOK\r\n")
        elif m := re.fullmatch(r'\+CSCS="(\w+)"', body, re.I):
            self.charset = m.group(1).upper()
            self._reply("\r\nOK\r\n")
        elif re.fullmatch(r"\+(CSMP|CNMI|CMEE|CPMS)=.*", body, re.I) or up in ("AT+CREG?",):
            self._reply("\r\n+CREG: 0,1\r\n\r\nOK\r\n" if "CREG" in up else "\r\nOK\r\n")
        elif m := re.fullmatch(r"\+CMGS=(.+)", body, re.I):
            self._cmgs = m.group(1).strip()
            self._reply("\r\n> ")
        elif m := re.fullmatch(r"\+CMGR=(\d+)", body, re.I):
            self._read(int(m.group(1)))
        elif m := re.fullmatch(r"\+CMGD=(\d+)(,\d+)?", body, re.I):
            with self._lock:
                self.storage.pop(int(m.group(1)), None)
            self._reply("\r\nOK\r\n")
        else:
            self._reply("\r\nERROR\r\n")

    def _read(self, index: int) -> None:
        with self._lock:
            msg = self.storage.get(index)
        if msg is None:
            self._reply("\r\n+CMS ERROR: 321\r\n")  # TS 27.005: invalid memory index
            return
        stat = 1 if msg.read else 0
        msg.read = True
        if self.pdu_mode:
            pdu = build_deliver(msg.sender, msg.text, time.gmtime())
            octets = len(pdu) // 2 - (1 + int(pdu[:2], 16))
            self._reply(f"\r\n+CMGR: {stat},,{octets}\r\n{pdu}\r\n\r\nOK\r\n")
        else:
            ucs2 = self.charset == "UCS2"
            sender = msg.sender.encode("utf-16-be").hex().upper() if ucs2 else msg.sender
            text = msg.text.encode("utf-16-be").hex().upper() if ucs2 else msg.text
            status = "REC READ" if stat else "REC UNREAD"
            stamp = time.strftime("%y/%m/%d,%H:%M:%S+00")
            self._reply(f'\r\n+CMGR: "{status}","{sender}",,"{stamp}"\r\n{text}\r\n\r\nOK\r\n')

    def _finish_send(self, arg: str, body: str) -> None:
        with self._lock:
            cause = self._fail_next.pop(0) if self._fail_next else None
        if cause is not None:
            self._reply(f"\r\n+CMS ERROR: {cause}\r\n")
            return
        try:
            done = self._accept_pdu(arg, body) if self.pdu_mode else self._accept_text(arg, body)
        except ValueError:
            self._reply(f"\r\n+CMS ERROR: "
                        f"{CMS_INVALID_PDU_PARAM if self.pdu_mode else CMS_INVALID_TEXT_PARAM}\r\n")
            return
        self._mr = (self._mr + 1) % 256
        if done is not None:
            self.sent.append(done)
            if self.record is not None:
                with self.record.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(done), ensure_ascii=False) + "\n")
        self._reply(f"\r\n+CMGS: {self._mr}\r\n\r\nOK\r\n")

    def _accept_pdu(self, arg: str, body: str) -> SentSms | None:
        number, text, concat, octets = parse_submit(body)
        if int(arg) != octets:
            raise ValueError(f"AT+CMGS={arg} but the TPDU has {octets} octets")
        if concat is None:
            return SentSms(number, text, 1, "pdu", time.time())
        ref, total, seq = concat
        parts = self._parts.setdefault((number, ref), {})
        parts[seq] = text
        if len(parts) < total:
            return None
        del self._parts[(number, ref)]
        return SentSms(number, "".join(parts[k] for k in sorted(parts)), total, "pdu", time.time())

    def _accept_text(self, arg: str, body: str) -> SentSms:
        number = arg.split(",")[0].strip('"')
        if self.charset == "UCS2":
            number = bytes.fromhex(number).decode("utf-16-be")
            text = bytes.fromhex(body).decode("utf-16-be")
            if len(text) > 70:  # TS 23.038: one UCS2 message holds 70 characters
                raise ValueError("text too long for one message")
        else:
            text = body
        return SentSms(number, text, 1, "text", time.time())

    def stop(self) -> None:
        """Ends `run`; the port belongs to whoever opened it."""
        self.stopping.set()
