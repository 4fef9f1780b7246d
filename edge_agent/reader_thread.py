"""What the serial and the I2C reader share: their thread and the state the agent reports."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from edge_agent.drivers.base import Measurement


class ReaderThread:
    """A sensor read on its own thread; `state`, `frames`, `errors` and `awake_s` go into
    the agent's status. Subclasses implement `_run`, which never raises."""

    def __init__(self, name: str, on_frame: Callable[[Measurement], None],
                 errors: Counter[str], *, poll_every_s: float, silent_after_s: float,
                 failed_retry_s: float) -> None:
        self.on_frame = on_frame
        self.poll_every_s = poll_every_s
        self.silent_after_s = silent_after_s
        self.failed_retry_s = failed_retry_s
        self.errors = errors
        self.frames = 0
        self.state = "starting"
        self.awake_s = 0.0  # time the sensor ran (fan and laser on), for run-hours
        self.last_frame_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)

    def _run(self) -> None:
        raise NotImplementedError
