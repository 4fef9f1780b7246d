"""Poll a PMSA003I on an I2C bus into the sampler, with the same face as the serial reader."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge_agent.drivers.base import Measurement
from edge_agent.drivers.pmsa003i import Pmsa003iSensor, SensorReadError
from edge_agent.reader_thread import ReaderThread

log = logging.getLogger(__name__)


EXTRA_HINT = "pip install 'airgrid[edge,edge-i2c]'"


class I2cUnavailable(RuntimeError):
    """No I2C bus to talk to: the driver is not installed or the machine has no I2C."""


def blinka_bus() -> Any:
    """The Pi's I2C bus through Blinka (GPIO 2 = SDA, GPIO 3 = SCL; 100 kHz per datasheet).

    Blinka's own errors on a machine without I2C are about its internals (a missing
    board module, a generic PC, /dev/i2c-1); they are turned into what a technician does.
    """
    try:
        import adafruit_pm25  # noqa: F401  (the PMSA003I driver; same extra)
        import board
        import busio
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("adafruit_pm25", "board", "busio",
                                                "adafruit_blinka"):
            raise I2cUnavailable(f"the I2C driver (Blinka, adafruit-circuitpython-pm25) is "
                                 f"not installed: {EXTRA_HINT}") from exc
        raise I2cUnavailable(f"no I2C on this machine: Blinka cannot load this board's "
                             f"support ({exc})") from exc
    except (NotImplementedError, RuntimeError, OSError, ValueError) as exc:
        raise I2cUnavailable(f"no I2C on this machine: {exc}") from exc
    scl, sda = getattr(board, "SCL", None), getattr(board, "SDA", None)
    if scl is None or sda is None:
        raise I2cUnavailable(f"no I2C on this machine: Blinka found board "
                             f"{getattr(board, 'board_id', None)!r}, which has no SDA/SCL pins "
                             "(on a Pi: sudo raspi-config nonint do_i2c 0, then reboot)")
    try:
        return busio.I2C(scl, sda, frequency=100_000)
    except (NotImplementedError, RuntimeError, OSError, ValueError) as exc:
        raise I2cUnavailable(f"cannot open the I2C bus: {exc} (on a Pi: sudo raspi-config "
                             "nonint do_i2c 0, then reboot)") from exc


class I2cSensorReader(ReaderThread):
    def __init__(
        self,
        sensor: Pmsa003iSensor,
        on_frame: Callable[[Measurement], None],
        *,
        poll_every_s: float = 1.0,
        silent_after_s: float = 10.0,
        failed_retry_s: float = 60.0,
    ) -> None:
        super().__init__("i2c-reader", on_frame, sensor.errors, poll_every_s=poll_every_s,
                         silent_after_s=silent_after_s, failed_retry_s=failed_retry_s)
        self.sensor = sensor

    def sleep(self) -> None:
        """The PMSA003I sleeps only through its SET pin; not wired here."""

    def wake(self) -> None:
        """See sleep()."""

    def poll_once(self) -> bool:
        try:
            frame = self.sensor.read()
        except SensorReadError as exc:
            now = time.monotonic()
            limit = self.failed_retry_s if self.state == "failed" else self.silent_after_s
            if now - self.last_frame_at > limit:
                if self.state != "failed":
                    log.error("PMSA003I at 0x%02X FAILED: %s; retrying every %.0f s",
                              self.sensor.address, exc, self.failed_retry_s)
                self.state = "failed"
                self.last_frame_at = now
                self.sensor._device = None  # probe again at the next read
            return False
        self.frames += 1
        self.last_frame_at = time.monotonic()
        self.state = "ok"
        self.on_frame(frame)
        return True

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.poll_every_s):
            self.poll_once()
            now = time.monotonic()
            if self.state == "ok":
                self.awake_s += now - last
            last = now
