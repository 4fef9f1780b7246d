"""Read a PMS5003 over a serial port into the sampler, surviving a vanishing port."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import serial

from edge_agent.drivers.pms5003 import CMD_ACTIVE, CMD_WAKE, PmsFrame, PmsStreamDecoder

log = logging.getLogger(__name__)


class SerialSensorReader:
    """Owns the port: opens it (again, after a USB adapter is unplugged), reads, decodes.

    Frames go to `on_frame`; non-reading frames (command acknowledgements) are dropped
    here. A sensor silent for `silent_after_s` is sent wake + active-mode commands.
    """

    def __init__(
        self,
        port: str,
        baudrate: int,
        on_frame: Callable[[PmsFrame], None],
        silent_after_s: float = 10.0,
        reopen_every_s: float = 2.0,
    ) -> None:
        self.port_path = port
        self.baudrate = baudrate
        self.on_frame = on_frame
        self.silent_after_s = silent_after_s
        self.reopen_every_s = reopen_every_s
        self.decoder = PmsStreamDecoder()
        self.errors: Counter[str] = self.decoder.errors
        self.frames = 0
        self.last_frame_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)

    def _open(self) -> serial.Serial | None:
        try:
            port = serial.Serial(self.port_path, self.baudrate, timeout=0.2)
        except (serial.SerialException, OSError) as exc:
            self.errors["port"] += 1
            log.warning("cannot open %s: %s", self.port_path, exc)
            return None
        port.reset_input_buffer()
        log.info("reading %s at %d baud", self.port_path, self.baudrate)
        return port

    def _run(self) -> None:
        port: serial.Serial | None = None
        while not self._stop.is_set():
            if port is None:
                port = self._open()
                if port is None:
                    self._stop.wait(self.reopen_every_s)
                    continue
                self.last_frame_at = time.monotonic()
            try:
                data = port.read(64)
                if time.monotonic() - self.last_frame_at > self.silent_after_s:
                    self.errors["timeout"] += 1
                    log.warning("no frame from %s for %.0f s; waking it",
                                self.port_path, self.silent_after_s)
                    port.write(CMD_WAKE + CMD_ACTIVE)
                    self.last_frame_at = time.monotonic()
            except (serial.SerialException, OSError) as exc:
                self.errors["port"] += 1
                log.warning("lost %s: %s", self.port_path, exc)
                port.close()
                port = None
                continue
            if data:
                for item in self.decoder.feed(data):
                    if isinstance(item, PmsFrame):
                        self.frames += 1
                        self.last_frame_at = time.monotonic()
                        self.on_frame(item)
        if port is not None:
            port.close()
