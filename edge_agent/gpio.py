"""Pulsing a sensor's SET or RESET pin, the last rung before declaring it failed.

Uses libgpiod's `gpioset` (Raspberry Pi OS ships it; the sysfs interface is deprecated).
PMS5003 datasheet: SET low = sleep, RESET low = reset; both are pulled up internally.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from typing import Protocol

log = logging.getLogger(__name__)


class ResetLine(Protocol):
    def pulse(self, low_s: float = 0.1) -> bool:
        """Drive the pin low for `low_s`, then high; False when that was not possible."""
        ...


class GpiosetLine:
    def __init__(self, line: int, chip: str = "gpiochip0") -> None:
        self.line = line
        self.chip = chip

    def _set(self, value: int) -> None:
        subprocess.run(["gpioset", self.chip, f"{self.line}={value}"], check=True, timeout=5)

    def pulse(self, low_s: float = 0.1) -> bool:
        if shutil.which("gpioset") is None:
            log.error("cannot pulse GPIO %d: gpioset not installed (apt install gpiod)",
                      self.line)
            return False
        try:
            self._set(0)
            time.sleep(low_s)
            self._set(1)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("cannot pulse GPIO %d on %s: %s", self.line, self.chip, exc)
            return False
        return True
