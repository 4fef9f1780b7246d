"""Plantower PMSA003I over I2C (address 0x12) through adafruit-circuitpython-pm25.

The bus comes from outside: on a Pi, Blinka's `busio.I2C(board.SCL, board.SDA)`; in tests,
any object with the same methods (try_lock, unlock, writeto, readfrom_into). Opening the
sensor probes the bus, so it happens in `open()`, never in the constructor.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from edge_agent.drivers.pms5003 import PM_RANGE_MAX, PmsFrame

ADDRESS = 0x12  # PMSA003I datasheet: fixed I2C address
__all__ = ["ADDRESS", "PM_RANGE_MAX", "Pmsa003iSensor", "SensorReadError"]

# adafruit_pm25's dict keys, in frame order ("standard" = CF=1, "env" = atmospheric).
_KEYS = (
    "pm10 standard", "pm25 standard", "pm100 standard", "pm10 env", "pm25 env", "pm100 env",
    "particles 03um", "particles 05um", "particles 10um", "particles 25um",
    "particles 50um", "particles 100um",
)


class SensorReadError(RuntimeError):
    """One read failed (bad frame or bus error); the caller retries at the next poll."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause


class Pmsa003iSensor:
    def __init__(self, bus: Any, address: int = ADDRESS) -> None:
        self.bus = bus
        self.address = address
        self.errors: Counter[str] = Counter()
        self._device: Any = None

    def open(self) -> None:
        """Probe the bus for the sensor; raises SensorReadError when it does not answer."""
        from adafruit_pm25.i2c import PM25_I2C

        try:
            self._device = PM25_I2C(self.bus, None, self.address)
        except (RuntimeError, OSError, ValueError) as exc:
            self.errors["timeout"] += 1
            raise SensorReadError("timeout", f"no PMSA003I at 0x{self.address:02X}: {exc}") from exc

    def read(self) -> PmsFrame:
        if self._device is None:
            self.open()
        try:
            values = self._device.read()
        except RuntimeError as exc:
            text = str(exc)
            cause = ("checksum" if "checksum" in text
                     else "framing" if "header" in text or "length" in text else "timeout")
            self.errors[cause] += 1
            raise SensorReadError(cause, text) from exc
        reserved = int.from_bytes(bytes(self._device._buffer[28:30]), "big")
        words = [int(values[k]) for k in _KEYS]
        return PmsFrame(*[*words, reserved])
