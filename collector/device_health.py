"""Device health from status messages; the Last Will (state offline) marks a device offline.

The online count is kept running and devices are kept in the order of their last status
(oldest first), so neither the gauge nor retention walks every device.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from airgrid.wire import Status


@dataclass
class Health:
    online: bool
    since_ms: int
    last_status_ms: int
    outbox_depth: int
    dropped: int
    clock_synced: bool


class DeviceHealth:
    def __init__(self) -> None:
        self.devices: dict[str, Health] = {}  # change only through `update` and `forget`
        self.online = 0
        # devices not yet found silent, by last status, oldest first (exact while sorted)
        self._by_status: OrderedDict[str, None] = OrderedDict()
        self._last_ms = 0
        self._sorted = True

    def update(self, device: str, s: Status, now_ms: int) -> Health:
        online = s.state == "online"
        h = self.devices.get(device)
        since = h.since_ms if h is not None and h.online == online else now_ms
        self.online += online - (h is not None and h.online)
        h = self.devices[device] = Health(online, since, now_ms, s.outbox_depth, s.dropped,
                                          s.clock_synced)
        self._by_status[device] = None
        self._by_status.move_to_end(device)
        if now_ms < self._last_ms:
            self._sorted = False  # the clock stepped back: sort at the next look
        else:
            self._last_ms = now_ms
        return h

    def online_count(self) -> int:
        return self.online

    def take_silent(self, before_ms: int) -> list[str]:
        """Devices with no status since `before_ms` not returned before (until they send
        one again): only those are looked at, not the whole fleet."""
        order, devices = self._by_status, self.devices
        if not self._sorted:
            self._by_status = order = OrderedDict(
                (d, None) for d in sorted(order, key=lambda d: devices[d].last_status_ms))
            self._sorted = True
        out = []
        while order:
            device = next(iter(order))
            if devices[device].last_status_ms >= before_ms:
                break
            order.popitem(last=False)
            out.append(device)
        return out

    def forget(self, devices: list[str]) -> None:
        for device in devices:
            h = self.devices.pop(device, None)
            if h is not None:
                self.online -= h.online
                self._by_status.pop(device, None)
