"""Read a UART sensor into the sampler, surviving noise, silence and a vanishing port.

Recovery ladder for a silent sensor (each rung after another `silent_after_s` of
silence): 1. send the mode command again, 2. wake it, 3. pulse its SET/RESET GPIO where
one is configured, 4. report it `failed` in status and keep retrying wake + mode every
`failed_retry_s`. The reader never raises out of its thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from edge_agent.drivers.base import Measurement, SerialProtocol
from edge_agent.gpio import ResetLine
from edge_agent.reader_thread import ReaderThread

log = logging.getLogger(__name__)

SENSOR_STATES = ("starting", "ok", "silent", "failed", "asleep", "no_port")


class SerialSensorReader(ReaderThread):
    def __init__(
        self,
        port: str,
        protocol: SerialProtocol,
        on_frame: Callable[[Measurement], None],
        *,
        polled: bool = False,
        poll_every_s: float = 1.0,
        silent_after_s: float = 10.0,
        failed_retry_s: float = 60.0,
        reopen_every_s: float = 2.0,
        reset_line: ResetLine | None = None,
        on_wake: Callable[[float], None] | None = None,
        init_commands: bytes = b"",
    ) -> None:
        self.decoder = protocol.new_decoder()
        super().__init__("serial-reader", on_frame, self.decoder.errors,
                         poll_every_s=poll_every_s, silent_after_s=silent_after_s,
                         failed_retry_s=failed_retry_s)
        self.port_path = port
        self.protocol = protocol
        self.polled = polled
        self.reopen_every_s = reopen_every_s
        self.reset_line = reset_line
        self.on_wake = on_wake
        self.init_commands = init_commands  # sent after every (re)open, e.g. working period
        self.replies = 0
        self.rung = 0  # how far up the recovery ladder we are
        self._asleep = False
        self._pending: list[bytes] = []
        self._lock = threading.Lock()

    # --- control (any thread) -----------------------------------------------------------

    def sleep(self) -> None:
        """Fan and laser off until `wake()` (spares the laser between samples)."""
        with self._lock:
            self._asleep = True
            self._pending.append(self.protocol.sleep)

    def wake(self) -> None:
        with self._lock:
            self._asleep = False
            self._pending.append(self.protocol.wake + self.protocol.configure(self.polled))
        self.last_frame_at = time.monotonic()
        if self.on_wake is not None:
            self.on_wake(time.monotonic())

    # --- reader thread ------------------------------------------------------------------

    def _open(self) -> serial.Serial | None:
        try:
            port = serial.Serial(self.port_path, self.protocol.baudrate, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.errors["port"] += 1
            if self.state != "no_port":
                log.warning("cannot open %s: %s (retrying every %.0f s)",
                            self.port_path, exc, self.reopen_every_s)
            self.state = "no_port"
            return None
        port.reset_input_buffer()
        log.info("reading %s (%s) at %d baud, %s mode", self.port_path, self.protocol.model,
                 self.protocol.baudrate, "polled" if self.polled else "active")
        self.state = "starting"
        with self._lock:
            asleep = self._asleep
        port.write(self.protocol.sleep if asleep else
                   self.protocol.wake + self.protocol.configure(self.polled)
                   + self.init_commands)
        return port

    def _silent(self, port: serial.Serial, now: float) -> None:
        wait = self.failed_retry_s if self.state == "failed" else self.silent_after_s
        if now - self.last_frame_at <= wait:
            return
        self.errors["timeout"] += 1
        self.last_frame_at = now
        self.rung += 1
        cmd = self.protocol.configure(self.polled)
        if self.rung == 1:
            log.warning("%s silent for %.0f s: sending the mode command again",
                        self.port_path, wait)
            self.state = "silent"
            port.write(cmd)
        elif self.rung == 2:
            log.warning("%s still silent: waking the sensor", self.port_path)
            port.write(self.protocol.wake + cmd)
            if self.on_wake is not None:
                self.on_wake(now)
        elif self.rung == 3 and self.reset_line is not None:
            log.warning("%s still silent: pulsing its reset GPIO", self.port_path)
            self.reset_line.pulse()
            port.write(self.protocol.wake + cmd)
        else:
            if self.state != "failed":
                log.error("sensor on %s FAILED: no frame after re-command, wake%s; "
                          "retrying every %.0f s", self.port_path,
                          " and reset" if self.reset_line else "", self.failed_retry_s)
            self.state = "failed"
            port.write(self.protocol.wake + cmd)

    def _run(self) -> None:
        port: serial.Serial | None = None
        next_poll = time.monotonic()
        last_tick = time.monotonic()
        while not self._stop.is_set():
            if port is None:
                port = self._open()
                if port is None:
                    self._stop.wait(self.reopen_every_s)
                    continue
                self.last_frame_at = time.monotonic()
            try:
                with self._lock:
                    pending, self._pending = self._pending, []
                    asleep = self._asleep
                for cmd in pending:
                    port.write(cmd)
                now = time.monotonic()
                if self.polled and not asleep and now >= next_poll:
                    port.write(self.protocol.poll)
                    next_poll = now + self.poll_every_s
                data = port.read(64)
                now = time.monotonic()
                if asleep:
                    self.state = "asleep"
                    self.last_frame_at = now
                else:
                    if self.state in ("ok", "starting", "silent"):
                        self.awake_s += now - last_tick
                    self._silent(port, now)
                last_tick = now
            except (serial.SerialException, OSError) as exc:
                self.errors["port"] += 1
                log.warning("lost %s: %s (reopening)", self.port_path, exc)
                self.state = "no_port"
                port.close()
                port = None
                continue
            if data:
                self._feed(data)
        if port is not None:
            port.close()

    def _feed(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if not self.protocol.is_measurement(item):
                self.replies += 1  # command acknowledgements are not readings
                continue
            self.frames += 1
            self.last_frame_at = time.monotonic()
            if self.rung:
                log.info("sensor on %s answers again", self.port_path)
            self.rung = 0
            self.state = "ok"
            self.on_frame(item)  # type: ignore[arg-type]
