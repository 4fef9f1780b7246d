"""SMS through a GSM modem on a serial port (pyserial), 3GPP TS 27.005 AT commands.

A text that fits one UCS2 message (70 characters) goes in text mode: `AT+CMGF=1`,
`AT+CSCS="UCS2"` (then the number, too, is UCS2 hex), `AT+CSMP=17,167,0,8` (DCS 8 =
UCS2), hex text, Ctrl-Z. A longer one goes in PDU mode (`AT+CMGF=0`) as parts joined by a
User Data Header, which text mode cannot send. A retried multipart message reuses its
concatenation reference, so a phone that got some parts the first time merges them.

Incoming SMS are announced `+CMTI: "SM",<index>` (`AT+CNMI=2,1`); each is read in PDU
mode, deleted, and handed to the service (acknowledgement replies).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable

import serial

from collector.alerting.channels.notifier import Address, Context, one_by_one
from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.channels.settings import SmsModemChannel
from collector.alerting.channels.sms_pdu import (
    UCS2_SINGLE_CHARS,
    PduError,
    decode_deliver,
    encode_submit,
)
from collector.alerting.config import ChannelSpec
from collector.alerting.errors import DeliveryRejected, DeliveryRetry
from collector.alerting.model import Message

log = logging.getLogger(__name__)

# TS 27.005 3.2.5: +CMS errors that no retry can fix (bad parameters, unknown number).
PERMANENT_CMS = {1, 8, 10, 21, 27, 28, 29, 30, 50, 96, 97, 98, 99, 302, 303, 304, 305, 325}
FINAL = re.compile(r"^(OK|ERROR|\+CMS ERROR: ?(\d+)|\+CME ERROR: ?(.+))$")
CMTI = re.compile(r'^\+CMTI: ?"(\w+)", ?(\d+)$')


class ModemError(Exception):
    def __init__(self, line: str, cms: int | None = None) -> None:
        super().__init__(line)
        self.cms = cms


class ModemNotifier:
    address: Address = "phone"

    def __init__(self, name: str, port: str, baudrate: int = 115200, timeout_s: float = 30.0,
                 limiter: RateLimiter | None = None, text_mode: bool = True,
                 on_sms: Callable[[str, str, str], None] | None = None) -> None:
        self.name = name
        self.port_path = port
        self.baudrate = baudrate
        self.timeout = timeout_s
        self.limiter = limiter or RateLimiter(6, 3600)
        self.text_mode = text_mode
        self.on_sms = on_sms
        self.ser: serial.Serial | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._incoming: queue.Queue[int] = queue.Queue()
        self._cmd = threading.Lock()
        self._stop = threading.Event()
        self.received = 0
        self.bad_incoming = 0

    # -- serial plumbing -------------------------------------------------------------
    def start(self) -> None:
        """Open now so replies are read before anything is sent; retried on first send."""
        try:
            self.open()
        except (DeliveryRetry, ModemError) as exc:
            self._reset()
            log.warning("modem %s not ready yet: %s", self.name, exc)

    def open(self) -> None:
        """Open the port and initialise the modem (no I/O in the constructor)."""
        try:
            self.ser = serial.Serial(self.port_path, self.baudrate, timeout=0.1)
        except serial.SerialException as exc:
            raise DeliveryRetry(f"modem {self.port_path}: {exc}", after_s=5.0) from exc
        threading.Thread(target=self._read_loop, name=f"{self.name}-rx", daemon=True).start()
        threading.Thread(target=self._inbound_loop, name=f"{self.name}-in", daemon=True).start()
        self.command("AT", 5)
        self.command("ATE0", 5)  # no echo: responses are only responses
        self.command("AT+CMEE=1", 5)
        self.command("AT+CNMI=2,1,0,0,0", 5)  # TS 27.005 3.4.1: announce new SMS with +CMTI

    def _read_loop(self) -> None:
        buf = b""
        while not self._stop.is_set() and self.ser is not None:
            try:
                data = self.ser.read(self.ser.in_waiting or 1)  # no waiting for a full buffer
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                time.sleep(0.5)
                continue
            if not data:
                continue
            buf += data
            while True:
                if buf.lstrip(b"\r\n").startswith(b"> "):  # the body prompt has no newline
                    buf = buf.lstrip(b"\r\n")[2:]
                    self._lines.put(">")
                    continue
                k = buf.find(b"\r\n")
                if k < 0:
                    break
                line, buf = buf[:k].decode(errors="replace").strip(), buf[k + 2:]
                if not line:
                    continue
                m = CMTI.match(line)
                if m:
                    self._incoming.put(int(m.group(2)))
                else:
                    self._lines.put(line)

    def _write(self, data: bytes) -> None:
        assert self.ser is not None
        self.ser.write(data)
        self.ser.flush()

    def _until(self, want: Callable[[str], bool], timeout: float) -> list[str]:
        """Lines up to and including one that `want`s; raise ModemError on an error code."""
        end = time.monotonic() + timeout
        got: list[str] = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise ModemError(f"no answer within {timeout:.0f} s (got {got})")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            m = FINAL.match(line)
            if m and line != "OK":
                raise ModemError(line, int(m.group(2)) if m.group(2) else None)
            got.append(line)
            if want(line):
                return got

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        with self._cmd:
            self._drain()
            self._write(cmd.encode() + b"\r")
            lines = self._until(lambda s: s == "OK", timeout or self.timeout)
        return [s for s in lines if s not in ("OK", cmd)]

    def _drain(self) -> None:
        while True:
            try:
                self._lines.get_nowait()
            except queue.Empty:
                return

    def _submit(self, cmgs: str, body: str) -> None:
        """AT+CMGS=…, wait for the prompt, send the body and Ctrl-Z, wait for +CMGS."""
        self._drain()
        self._write(cmgs.encode() + b"\r")
        self._until(lambda s: s == ">", 10)
        self._write(body.encode() + b"\x1a")
        self._until(lambda s: s == "OK", self.timeout)

    # -- sending -----------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        now = time.time()
        wait = self.limiter.wait_s(msg.recipient, now)
        if wait > 0:
            raise DeliveryRetry(f"rate limit for {msg.recipient}", after_s=wait, counts=False)
        if self.ser is None:
            self.open()
        # the same message always gets the same concatenation reference
        ref = hashlib.sha256(msg.id.encode()).digest()[0]
        try:
            if self.text_mode and len(msg.text.encode("utf-16-be")) <= UCS2_SINGLE_CHARS * 2:
                with self._cmd:
                    for c in ("AT+CMGF=1", 'AT+CSCS="UCS2"', "AT+CSMP=17,167,0,8"):
                        self._drain()
                        self._write(c.encode() + b"\r")
                        self._until(lambda s: s == "OK", 5)
                    number = msg.recipient.encode("utf-16-be").hex().upper()
                    self._submit(f'AT+CMGS="{number}"',
                                 msg.text.encode("utf-16-be").hex().upper())
            else:
                parts = encode_submit(msg.recipient, msg.text, ref)
                with self._cmd:
                    self._drain()
                    self._write(b"AT+CMGF=0\r")
                    self._until(lambda s: s == "OK", 5)
                    for p in parts:
                        self._submit(f"AT+CMGS={p.tpdu_octets}", p.hex)
        except ValueError as exc:
            raise DeliveryRejected(str(exc)) from exc
        except ModemError as exc:
            if exc.cms in PERMANENT_CMS:
                raise DeliveryRejected(f"modem refused: {exc}") from exc
            raise DeliveryRetry(f"modem: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            self._reset()
            raise DeliveryRetry(f"modem {self.port_path}: {exc}", after_s=5.0) from exc
        self.limiter.record(msg.recipient, now)

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        return one_by_one(self, msgs)

    # -- receiving -----------------------------------------------------------------------
    def _inbound_loop(self) -> None:
        while not self._stop.is_set():
            try:
                index = self._incoming.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.command("AT+CMGF=0", 5)
                lines = self.command(f"AT+CMGR={index}", 10)
                pdu = next(s for s in lines if not s.startswith("+CMGR"))
                sms = decode_deliver(pdu)
                self.command(f"AT+CMGD={index}", 5)
            except (ModemError, PduError, StopIteration, serial.SerialException, OSError) as exc:
                self.bad_incoming += 1
                log.warning("modem %s: incoming SMS %d unreadable: %s", self.name, index, exc)
                continue
            self.received += 1
            if self.on_sms is not None:
                try:
                    self.on_sms(self.name, sms.sender, sms.text)
                except Exception:  # a bad reply never stops the modem
                    log.exception("handling SMS from %s failed", sms.sender)

    def _reset(self) -> None:
        ser, self.ser = self.ser, None
        if ser is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()

    def close(self) -> None:
        self._stop.set()
        self._reset()


def from_spec(spec: ChannelSpec, ctx: Context) -> ModemNotifier:
    o = spec.settings
    assert isinstance(o, SmsModemChannel)
    return ModemNotifier(spec.name, o.port, o.baudrate, o.timeout_s,
                         RateLimiter(o.per_recipient, o.per_recipient_window_ms / 1000),
                         o.text_mode, ctx.on_sms)
