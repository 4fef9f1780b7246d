"""A simulated SDS011 on a pseudo-terminal: active/query mode, sleep/work, working period."""

from __future__ import annotations

import random
from dataclasses import dataclass

from firmware_sim import sds011_firmware as fw
from firmware_sim.device_loop import UartDevice
from firmware_sim.scenarios import Profile

#: Protocol V1.3: with a working period of n minutes the sensor works 30 s, reports,
#: then sleeps for the rest of the n minutes.
WORK_BEFORE_REPORT_S = 30.0


def _zero(t: float) -> float:
    return 0.0


@dataclass
class Sds011Device(UartDevice):
    profile: Profile = _zero
    device_id: int = 0xA1B2
    seed: int = 0
    query_mode: bool = False
    working: bool = True
    period_min: int = 0
    minute_s: float = 60.0  # how long a "minute" of working period lasts (tests shorten it)
    firmware_date: tuple[int, int, int] = (18, 11, 16)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rng = random.Random(self.seed)
        self._cycle_start = 0.0

    def reading(self) -> bytes:
        pm25 = self.profile(self.elapsed())
        return fw.data_frame(pm25, pm25 * 1.3, self.device_id)

    def _reply(self, cmd: int, d2: int, d3: int, d4: int = 0) -> None:
        self.port.write(fw.reply_frame(cmd, d2, d3, d4, self.device_id))

    def handle(self, c: fw.HostCommand) -> None:
        if c.target not in (0xFFFF, self.device_id):
            return
        self.woken_at = self.elapsed()
        set_, value = c.data[0], c.data[1]
        if c.cmd == fw.SLEEP_WORK:
            if set_:
                if value and not self.working:
                    self._cycle_start = self.elapsed()
                self.working = bool(value)
            self._reply(fw.SLEEP_WORK, set_, int(self.working))
        elif not self.working:
            return  # asleep, the sensor answers only the work command
        elif c.cmd == fw.QUERY:
            self.send(self.reading())
        elif c.cmd == fw.REPORTING_MODE:
            if set_:
                self.query_mode = bool(value)
            self._reply(fw.REPORTING_MODE, set_, int(self.query_mode))
        elif c.cmd == fw.WORKING_PERIOD:
            if set_:
                self.period_min = min(30, value)
                self._cycle_start = self.elapsed()
            self._reply(fw.WORKING_PERIOD, set_, self.period_min)
        elif c.cmd == fw.FIRMWARE:
            self._reply(fw.FIRMWARE, *self.firmware_date)
        elif c.cmd == fw.DEVICE_ID:
            self.device_id = (c.data[10] << 8) | c.data[11]
            self._reply(fw.DEVICE_ID, 0, 0, 0)

    def on_bytes(self, rx: bytearray) -> None:
        while (c := fw.parse_command(rx)) is not None:
            self.handle(c)

    def periodic(self) -> bytes | None:
        if not self.working or self.query_mode:
            return None
        if self.period_min == 0:
            return self.reading()
        # Working period: one report per cycle, WORK_BEFORE_REPORT_S into it.
        cycle = self.period_min * self.minute_s
        t = self.elapsed() - self._cycle_start
        if t >= cycle:
            self._cycle_start += cycle * (t // cycle)
            self._reported = False
        work_s = min(WORK_BEFORE_REPORT_S * self.minute_s / 60.0, cycle)
        if t % cycle >= work_s and not getattr(self, "_reported", False):
            self._reported = True
            return self.reading()
        return None

    def bad_checksum(self, frame: bytes) -> bytes:
        return frame[:8] + bytes([(frame[8] + 1 + self._rng.randrange(200)) % 256]) + frame[9:]

    def ack(self) -> bytes:
        return fw.reply_frame(fw.REPORTING_MODE, 0, int(self.query_mode), 0, self.device_id)
